"""Instruction optimization over DSPy programs: the only package that imports ``dspy``.

What exists so far (docs/optimize.md):

* :mod:`.bridge`: any instructkit LM as a DSPy 3.4 engine (:func:`bridge_lm`), with a
  :class:`CallCounter` that counts task and proposer calls and enforces a call budget;
* :mod:`.adapter`: :class:`PlainAdapter`, prompts small models can follow;
* :mod:`.task`, :mod:`.metrics`: a one-predictor task read from a dataset; metrics by name;
* :mod:`.scoring`: score an instruction or a program on a dataset with any instructkit metric and
  compare instructions with paired bootstrap CIs and Holm's correction; items run on threads
  whose calls the bridge sends to the model in batches;
* :mod:`.permodule`, :mod:`.program`: :class:`PerModule`, per-predictor instruction search of
  a multi-stage program, and the ``instructkit optimize program`` workflow;
* :mod:`.gradient`: gradient-based search on a local model (a soft prompt, a discrete
  instruction search).

LiteLLM (under DSPy) would fetch its model cost map from the network when imported; the
variable below makes it use its bundled copy. It must be set before ``dspy`` is first imported,
which is why it is set here, before the submodules load.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from instructkit.optimize.adapter import PlainAdapter  # noqa: E402
from instructkit.optimize.bridge import (  # noqa: E402
    PROPOSER,
    TASK,
    BudgetExceeded,
    CallCounter,
    InstructkitEngine,
    bridge_lm,
)
from instructkit.optimize.evolutionary import (  # noqa: E402
    Evolutionary,
    EvolutionResult,
    EvolutionSettings,
)
from instructkit.optimize.gradient import (  # noqa: E402
    DiscreteResult,
    GradientSettings,
    SoftPrompt,
    discrete_search,
    train_soft_prompt,
)
from instructkit.optimize.metrics import named_label, resolve_metric  # noqa: E402
from instructkit.optimize.opro import OPRO, OPROResult, OPROSettings  # noqa: E402
from instructkit.optimize.permodule import (  # noqa: E402
    PerModule,
    PerModuleResult,
    PerModuleSettings,
    StageResult,
)
from instructkit.optimize.program import (  # noqa: E402
    ProgramOptConfig,
    ProgramOptResult,
    run_program_optimization,
)
from instructkit.optimize.prompt import (  # noqa: E402
    PromptOptConfig,
    PromptOptResult,
    run_prompt_optimization,
)
from instructkit.optimize.scoring import (  # noqa: E402
    CandidateComparison,
    InstructionComparison,
    ItemResult,
    ProgramScore,
    compare_instructions,
    compare_scores,
    default_threads,
    score_each,
    score_instruction,
    score_program,
)
from instructkit.optimize.task import InstructionTask  # noqa: E402

__all__ = [
    "PROPOSER",
    "TASK",
    "BudgetExceeded",
    "CallCounter",
    "CandidateComparison",
    "InstructionComparison",
    "InstructionTask",
    "InstructkitEngine",
    "ItemResult",
    "PlainAdapter",
    "ProgramScore",
    "bridge_lm",
    "compare_instructions",
    "compare_scores",
    "named_label",
    "resolve_metric",
    "score_instruction",
    "score_program",
    "score_each",
    "default_threads",
    "Evolutionary",
    "EvolutionResult",
    "EvolutionSettings",
    "OPRO",
    "OPROResult",
    "OPROSettings",
    "PromptOptConfig",
    "PromptOptResult",
    "run_prompt_optimization",
    "PerModule",
    "PerModuleResult",
    "PerModuleSettings",
    "StageResult",
    "ProgramOptConfig",
    "ProgramOptResult",
    "run_program_optimization",
    "DiscreteResult",
    "GradientSettings",
    "SoftPrompt",
    "discrete_search",
    "train_soft_prompt",
]
