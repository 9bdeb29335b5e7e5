"""The checks of dev/deploy_check, one module per concern (its docstring says what each checks)."""
