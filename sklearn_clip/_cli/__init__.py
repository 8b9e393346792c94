"""The subcommands of ``sklearn-clip``, one module each."""
