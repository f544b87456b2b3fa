"""`sv4d verify-golden`: conformance with the reference's recorded vectors."""

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from golden_writer import write_golden
from sv4d.cli import main
from sv4d.verify import verify_golden


def test_verify_golden_passes_on_reference_vectors(data_dir, capsys):
    rc = main(["verify-golden", str(data_dir / "golden")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "FAIL" not in out
    # every recorded tensor was compared, one line each
    for name in (
        "unet_sv4d2 ",
        "unet_sv4d2_8views",
        "sampling_sv4d2_first_window",
        "sampling_sv4d2_later_window",
        "sampling_sv4d2_8views",
    ):
        assert name in out
    assert "out.decoded" in out and "step3.x_next" in out and "trace.middle_block" in out


def test_verify_golden_fails_when_a_recorded_tensor_is_off(data_dir, tmp_path, capsys):
    d = tmp_path / "golden"
    shutil.copytree(data_dir / "golden", d)
    p = d / "unet_sv4d2.safetensors"
    t = load_file(str(p))
    t["out"] = t["out"] + 1e-3 * torch.randn_like(t["out"]).sign()
    save_file(t, str(p), metadata={"style": "sv4d2"})
    assert main(["verify-golden", str(d)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  unet_sv4d2 " in out and "passed, 1 failed" in out


def test_reference_grouping_is_what_the_golden_needs(data_dir, tmp_path):
    """Swapping the 3-D grouping for per-pixel view attention must fail the sv4d2 vectors."""
    d = tmp_path / "golden"
    shutil.copytree(data_dir / "golden", d)
    import json

    doc = json.loads((d / "tiny_config.json").read_text())
    doc["engine_config"]["sv4d2"]["params"]["network_config"]["params"]["use_3d_attention"] = False
    (d / "tiny_config.json").write_text(json.dumps(doc))
    assert not verify_golden(d, echo=None)


@pytest.mark.parametrize("T,V,latent,mult,nres", [(2, 3, 8, (1, 2, 2), 2), (4, 2, 4, (1, 1), 1)])
def test_verify_golden_reads_every_size_from_the_directory(data_dir, tmp_path, T, V, latent, mult, nres):
    d = write_golden(
        data_dir / "golden" / "tiny_config.json",
        tmp_path / "g",
        T=T,
        V=V,
        latent=latent,
        channel_mult=mult,
        num_res_blocks=nres,
        azimuths=[10 + 37 * i for i in range(V + 1)],
    )
    lines = []
    assert verify_golden(d, echo=lines.append), "\n".join(lines)
    assert lines[-1].endswith(" 0 failed")


def test_verify_golden_bad_directory_is_a_clear_error(tmp_path, capsys):
    assert main(["verify-golden", str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["verify-golden", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "tiny_config.json" in err
