"""Hidden test suites: ``test_<exercise>.py`` per registry exercise, run only by the engine.

Each module sets ``EXERCISE`` and defines exactly the test functions named in the registry's
``Exercise.tests``. Fixtures (from the engine's pytest plugin): ``student`` (a
``client.StudentSession``), ``rng`` (the run's ``torch.Generator``), ``device`` (where value tests
place inputs), ``propagation_devices`` (``meta``, plus ``cuda`` when present) and ``exercise``.
"""
