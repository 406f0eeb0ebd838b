"""The status page, its JSON twin and ``/healthz``: a read-only web face of the station, served
by the daemon when ``[web] listen`` is set (``server``), built by ``app.create_app``.

Every page and every JSON answer is read from the same models the command line prints:
``usecases/status`` for the station, ``views`` for an item and a listing. Nothing here writes.
"""
