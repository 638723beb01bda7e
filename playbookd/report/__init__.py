"""Test-and-learn results: what each playbook did and whether it worked, per group, with significance."""
