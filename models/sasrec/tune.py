"""Ray Tune hook for SASRec (trainers/tune.py): yield (epoch, validation metrics) while training.

`SasrecEngine.fit` owns its epoch loop (early stopping, best weights); here it runs in a thread and
pauses after each validated epoch until the trial has reported and checkpointed
(`SasrecEngine.checkpoint`: weights plus the training state -- Adam, weight average, RNG, counters).
A trial restarted from such a checkpoint continues with the next epoch (`warm_start`), exactly as if
it had never stopped, so ASHA's epoch counter keeps going up.
"""
from __future__ import annotations

import queue
import threading

from recdata.dataset import VAL


def tune_epochs(engine, ds, start_epoch: int = 0):
    results: queue.Queue = queue.Queue(maxsize=1)
    resume = threading.Semaphore(0)
    failure: list[BaseException] = []

    def on_epoch(epoch: int, rec: dict) -> None:
        if "val_ndcg@10" in rec:
            results.put((epoch, {k: v for k, v in rec.items() if k != "epoch"}))
            resume.acquire()  # wait for the trial to report and save this epoch

    def train() -> None:
        try:
            engine.fit(ds.train, ds.interactions.select(VAL), on_epoch=on_epoch, warm_start=start_epoch > 0)
        except BaseException as e:  # surfaced in the trial's thread below
            failure.append(e)
        finally:
            results.put(None)

    threading.Thread(target=train, name="sasrec-fit", daemon=True).start()
    while (item := results.get()) is not None:
        yield item
        resume.release()
    if failure:
        raise failure[0]
