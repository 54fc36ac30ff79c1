"""Wire formats shared by the simulator (which speaks them) and the router (which reads them)."""
