"""Engine loading for Serve replicas (serve_app/artifacts.py), without starting Serve."""
import numpy as np

from models.popularity import PopularityEngine
from recdata.dataset import prepare
from recdata.schema import HistoryBatch
from serve_app.artifacts import load_for_serving
from support import write_cyclic_log


def test_sasrec_is_served_by_its_tflite_model_and_others_as_saved(tmp_path):
    from models.sasrec import SasrecConfig, SasrecEngine

    data = prepare("sasrec", write_cyclic_log(tmp_path, items=20))
    sas = SasrecEngine(SasrecConfig(max_len=24, hidden=16, blocks=1, epochs=1, batch=16, jit_compile=False),
                       data.catalog).fit(data.train)
    scorer, runtime = load_for_serving(sas.save(tmp_path / "sasrec"))
    assert runtime == "tflite" and type(scorer).__name__ == "SasrecTFLite"
    assert scorer.catalog.n_items == data.catalog.n_items
    batch = HistoryBatch.of([[1, 2, 3], [4], list(range(20))])
    np.testing.assert_allclose(scorer.score(batch), sas.score(batch), atol=1e-4)

    pop, runtime = load_for_serving(PopularityEngine(catalog=data.catalog).fit(data.train).save(tmp_path / "pop"))
    assert runtime == "python" and isinstance(pop, PopularityEngine)
