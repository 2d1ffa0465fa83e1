"""Promises proven by mutation (``make promises``) and the mutation score of the device core
(``make mutation-score``): see promises/catalogue.toml and promises/mutation.toml."""
