"""Installing published layers on a target: sources, staging, bytecode, the atomic switch."""
