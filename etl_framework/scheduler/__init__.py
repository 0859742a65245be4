"""`etl scheduler` (SPEC §7): the local twin of EventBridge + Glue's trigger service.

- `store.py`      durable bookkeeping in the state store (events, batches, fired schedules, firings) + the lock
                  that keeps a second scheduler off the same store;
- `schedules.py`  scheduled triggers: which tick is due, a missed run started once on restart;
- `events.py`     event triggers: file arrival (watchdog + listing poll), size stability, Glue batching;
- `service.py`    the loop that ties them to a run starter, honours max_concurrent_runs and stops cleanly.
"""
