"""Request handling per API: validate, resolve inputs, submit to the runner, encode, answer."""
