"""Where simulations run: a local process pool (default) or Modal, behind one interface."""
