"""Tables, the decision log and the terminal display, made from a finished (or running) search."""
