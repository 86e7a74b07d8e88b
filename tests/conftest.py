import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from instructkit.models import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    from instructkit.models import build_tiny_model

    return build_tiny_model(tiny_tokenizer, seed=0)
