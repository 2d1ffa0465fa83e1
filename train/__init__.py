"""medinfer.train: model specs, real datasets and training (needs the [train] extra).

    from medinfer.train import registry
    spec = registry.get("drug_activity_rf")
"""
