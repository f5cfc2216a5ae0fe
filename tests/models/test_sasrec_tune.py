"""A SASRec Tune trial restarted from its checkpoint continues where it stopped (issue 16, defect 1):
the next epoch is numbered after the checkpoint's, so ASHA's counter never goes back, and with the
training state in the checkpoint the resumed epoch equals the uninterrupted run's."""
from __future__ import annotations

import pytest

from models.base import Engine
from models.sasrec import SasrecConfig, SasrecEngine
from models.sasrec.tune import tune_epochs
from recdata.dataset import prepare
from support import write_cyclic_log


def _config() -> SasrecConfig:
    return SasrecConfig(max_len=8, hidden=16, blocks=1, heads=2, epochs=3, batch=16, lr=0.01, dropout=0.1,
                        jit_compile=False, patience=10, eval_every=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return prepare("sasrec", write_cyclic_log(tmp_path_factory.mktemp("cyclic"), items=30))


def test_a_restarted_trial_continues_from_its_checkpoint_epoch(data, tmp_path):
    straight = list(tune_epochs(SasrecEngine(_config(), data.catalog), data, 0))
    assert [epoch for epoch, _ in straight] == [1, 2, 3]

    interrupted = SasrecEngine(_config(), data.catalog)
    epochs = tune_epochs(interrupted, data, 0)
    for epoch, _ in epochs:
        if epoch == 2:  # the trial reports epoch 2 with a checkpoint, then its worker dies
            interrupted.checkpoint(tmp_path / "engine")
            break
    epochs.close()

    restarted = Engine.load(tmp_path / "engine")
    resumed = list(tune_epochs(restarted, data, 2))
    assert [epoch for epoch, _ in resumed] == [3]  # not [1, 2, 3]: the epoch counter goes on
    ours, theirs = resumed[0][1], straight[2][1]
    assert ours["val_ndcg@10"] == pytest.approx(theirs["val_ndcg@10"], abs=1e-6)
    assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
