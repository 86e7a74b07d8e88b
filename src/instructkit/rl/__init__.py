"""Reinforcement learning from rewards: the reward sources (verifiers, judges, a trained reward
model) and the workflows that combine a policy from ``train`` with them.

This layer sits above ``train`` and ``evaluate`` because a reward source joins both: IFEval's
checks and LLM judges come from ``evaluate``, the reward model and the policy optimizers from
``train``. ``train`` takes rewards through the :class:`~instructkit.train.rewards.RewardFn`
contract and never imports a source.
"""
