"""Device models and the skin physics behind the simulated rig."""
