"""PermitGame's Django project and its one app: the thin shell around ``sim_core``."""
