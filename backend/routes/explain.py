"""POST /api/explain: a faithful explanation of one uploaded image or text by a trained run.

Untrusted input is checked before it reaches the model:
- the whole request body is capped at `max_upload_bytes` (413) before the multipart form is
  parsed: by its Content-Length, and by counting the bytes as they arrive (chunked bodies);
- images must decode as PNG, JPEG, GIF, BMP or WEBP (the bytes decide, not the filename): any
  other file is 415, a damaged one 422, one over `max_image_pixels` 422 (decompression bombs);
- the form is parsed strictly: every text field must be UTF-8 (422 naming the field and the first
  invalid byte's offset; Starlette would decode it as Latin-1), and no field has a size limit of
  its own below the body cap, so an oversized field reaches its own check (a 422 naming it), not
  the multipart parser's 400;
- texts must be at most `max_text_chars` characters and are normalised as `rekd explain` does
  (rekd_core.data.inputs.normalise_text: control characters other than tab, newline and carriage
  return become spaces); a text with nothing left to explain is 422 (the body was within its size
  limit, the *content* is what is refused);
- optional ground truth: an `evidence` mask image passes the same checks as the image (formats,
  pixel cap, damage), a `rationale` (highlighted substrings, one per line) the text's length cap,
  and each substring must occur in the text (422 naming it);
- the model is a run (`run_id`) or an exported model folder (`model_dir`, rekd_core/store/hub.py): a
  folder must lie in the runs directory or a data root (symlinks resolved, nothing read before;
  a relative path is taken under the runs directory) and be an export (422 otherwise); the folder
  is read only inside itself (its stored teacher and data paths are never followed).
The model runs in the threadpool so the event loop keeps serving other requests.
"""

from __future__ import annotations

import codecs
import io
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote_to_bytes

import numpy as np
from fastapi import APIRouter, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from PIL import Image
from pydantic import BaseModel, Field
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import Message, Receive

from backend.quality import ExamplePlausibility, RationaleWarning
from backend.routes._shared import png_data_url
from backend.routes.datasets import outside_message
from backend.routes.examples import ExampleFaithfulness, PatchPosition, TokenPosition
from backend.routes.faithfulness import baseline_run_or_422
from backend.runs_fs import SettingsDep, error_responses, run_dir_or_404
from rekd_core.analysis.explain import Explanation, explain, load_run
from rekd_core.checks import outside_roots
from rekd_core.data.inputs import decode_utf8, normalise_text
from rekd_core.excerpts import excerpt
from rekd_core.model.runmodel import LoadedRun
from rekd_core.store.hub import is_export, weights_parameter_count
from service.settings import Settings, get_settings

ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
_READ_CHUNK = 64 * 1024


# --- the body cap, applied before FastAPI parses the form --------------------------------------
def too_large(cap: int) -> HTTPException:
    return HTTPException(413, f"request body too large: at most {cap} bytes are accepted")


def _settings_of(request: Request) -> Settings:
    # the route class runs before dependency injection, so honour the app's overrides by hand
    overrides = getattr(request.app, "dependency_overrides", {})
    return overrides.get(get_settings, get_settings)()


def capped_receive(receive: Receive, cap: int) -> Receive:
    """`receive`, raising the 413 (too_large) once the body passes `cap` bytes, however it is chunked."""
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > cap:
                raise too_large(cap)
        return message

    return capped


# --- the form, parsed strictly --------------------------------------------------------------------
def _field_text(name: str, data: bytes) -> str:
    try:
        return decode_utf8(data, what=name if len(name) <= 60 else name[:60] + "…")
    except ValueError as err:
        raise HTTPException(422, str(err)) from None


class _StrictMultiPartParser(MultiPartParser):
    """Starlette's parser, but a UTF-8 text field that is not UTF-8 is refused (it falls back to Latin-1)."""

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None and codecs.lookup(self._charset or "utf-8").name == "utf-8":
            _field_text(part.field_name, bytes(part.data))
        super().on_part_end()


def _urlencoded(body: bytes, max_fields: int | float) -> FormData:
    """An application/x-www-form-urlencoded body; each value's bytes (after %-decoding) must be UTF-8."""
    items: list[tuple[str, str | StarletteUploadFile]] = []  # FormData's item type; here strings only
    for pair in body.split(b"&"):
        if not pair:
            continue
        if len(items) >= max_fields:
            raise HTTPException(400, f"Too many fields. Maximum number of fields is {max_fields}.")
        raw_name, _, raw_value = pair.partition(b"=")
        name = _field_text("a field name", unquote_to_bytes(raw_name.replace(b"+", b" ")))
        items.append((name, _field_text(name, unquote_to_bytes(raw_value.replace(b"+", b" ")))))
    return FormData(items)


class _StrictFormRequest(Request):
    """The request as the route sees it: its form parsed strictly (above), each field capped only
    by the body cap (`cap`), so `_checked_text` and friends answer for an oversized field."""

    def __init__(self, scope: Any, receive: Receive, cap: int) -> None:
        super().__init__(scope, receive)
        self._cap = cap
        self._strict: FormData | None = None

    def form(self, *, max_files: int | float = 1000, max_fields: int | float = 1000,
             max_part_size: int = 0) -> Any:
        return self._parse(max_files, max_fields)

    async def _parse(self, max_files: int | float, max_fields: int | float) -> FormData:
        if self._strict is None:
            kind = self.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind == "multipart/form-data":
                try:
                    self._strict = await _StrictMultiPartParser(
                        self.headers, self.stream(), max_files=max_files, max_fields=max_fields,
                        max_part_size=self._cap).parse()
                except MultiPartException as exc:
                    raise HTTPException(400, exc.message) from None
            elif kind == "application/x-www-form-urlencoded":
                self._strict = _urlencoded(await self.body(), max_fields)
            else:
                self._strict = FormData()
        return self._strict


class CappedBodyRoute(APIRoute):
    """Refuses an oversized body before the multipart parser spools it to disk, and parses the
    form strictly (`_StrictFormRequest`).

    A dependency would run too late: FastAPI reads the whole form before solving dependencies.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        parse_and_run = super().get_route_handler()

        async def handler(request: Request) -> Response:
            cap = _settings_of(request).max_upload_bytes
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                raise too_large(cap)
            return await parse_and_run(_StrictFormRequest(request.scope, capped_receive(request.receive, cap), cap))

        return handler


router = APIRouter(tags=["explain"], route_class=CappedBodyRoute)


# --- response model ----------------------------------------------------------------------------
class PosthocOut(BaseModel):
    run_id: str = Field(description="the baseline CLS run")
    method: Literal["integrated_gradients"]
    mask: list[int] = Field(description="per position, 1 = among the top-k attributions (k = the rationale's size)")
    attributions: list[float] = Field(description="per position, sum of |IG attribution| over its pixels / dims")
    comprehensiveness: float = Field(description="CLS model: p(ŷ|x) − p(ŷ|x without the top-k)")
    sufficiency: float = Field(description="CLS model: p(ŷ|x) − p(ŷ|the top-k only)")


class ExplanationOut(BaseModel):
    modality: Literal["vision", "text"]
    label: str = Field(description="predicted class name")
    label_index: int
    probabilities: dict[str, float] = Field(description="class name -> probability")
    mask: list[int] = Field(description="per position, 1 = the predictor saw it")
    selection_prob: list[float] = Field(description="the generator's keep probability per position")
    positions: list[PatchPosition | TokenPosition] = Field(
        description="vision: each patch's pixel box in the uploaded image; text: each token's character span")
    selected_fraction: float
    masked_input: str = Field(description="vision: the input with unselected patches blanked, a PNG data URL; "
                                          "text: the kept tokens, each run of dropped ones as '…'")
    run: str = Field(description="the run id that explained the input (the teacher's for `teacher`)")
    checkpoint_step: int
    teacher: ExplanationOut | None = Field(None, description="REKD runs: the teacher's explanation of the same input")
    extra: dict[str, Any] = Field(default_factory=dict)
    faithfulness: ExampleFaithfulness | None = Field(
        None, description="ERASER comprehensiveness / sufficiency of `mask` under the same predictor "
                          "(null for CLS runs)")
    posthoc: PosthocOut | None = Field(
        None, description="with `baseline_run`: that CLS run's integrated-gradients selection at this sparsity")
    evidence: list[int] | None = Field(
        None, description="with ground truth for the input (`evidence` mask or `rationale`): 0/1 per position of this "
                          "run (`mask`'s positions), as the run's featurizer maps its training data's evidence; "
                          "null without")
    plausibility: ExamplePlausibility | None = Field(
        None, description="`mask` against `evidence`: precision (share of the rationale that is evidence) and recall "
                          "(share of the evidence selected); null without ground truth, for a CLS run, or when no "
                          "position the run sees is evidence (e.g. a highlight past its max_len)")
    warnings: list[RationaleWarning] = Field(
        default_factory=list, description="the run's rationale warnings (as GET /api/runs/{id}/quality: its test "
                                          "result's, else its latest dev evaluation's): e.g. a rationale that "
                                          "barely depends on its input; [] when none")


def _to_out(ex: Explanation) -> ExplanationOut:
    """Explanation.to_dict() (not compact), but the image as a PNG and no server path."""
    d = {f.name: getattr(ex, f.name) for f in fields(ex)}
    if isinstance(ex.masked_input, np.ndarray):
        d["masked_input"] = png_data_url(ex.masked_input)
    d["run"] = Path(ex.run).name
    d["teacher"] = None if ex.teacher is None else _to_out(ex.teacher)
    return ExplanationOut(**d)


# --- input checks ------------------------------------------------------------------------------
async def _read_capped(file: UploadFile, cap: int) -> bytes:
    chunks: list[bytes] = []
    seen = 0
    while chunk := await file.read(_READ_CHUNK):
        seen += len(chunk)
        if seen > cap:
            raise too_large(cap)
        chunks.append(chunk)
    return b"".join(chunks)


def _claims_allowed_format(data: bytes) -> bool:
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Read the header only (cheap, so on the event loop: catch_warnings is not thread-safe)."""
    if not data:
        raise HTTPException(422, "the uploaded file is empty")
    Image.MAX_IMAGE_PIXELS = max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            # only the accepted formats' parsers ever see the bytes
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise HTTPException(422, f"image too large: at most {max_pixels} pixels are accepted") from None
        except Exception:  # malformed headers raise OSError, SyntaxError, struct.error...
            if _claims_allowed_format(data):
                raise HTTPException(422, "the image is corrupt: its header cannot be decoded") from None
            raise HTTPException(415, "not a supported image: send PNG, JPEG, GIF, BMP or WEBP") from None
    if img.format not in ALLOWED_FORMATS:
        raise HTTPException(415, f"{img.format} images are not accepted: send PNG, JPEG, GIF, BMP or WEBP")
    if img.width * img.height > max_pixels:
        raise HTTPException(422, f"image too large: {img.width}x{img.height} is over {max_pixels} pixels")
    return img


def _pixels(img: Image.Image) -> np.ndarray:
    """Decode the (first frame of the) image to uint8 gray or RGB; 422 if the data is damaged."""
    try:
        img.load()
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            wide = np.asarray(img, dtype=np.float32)
            scale = 257.0 if img.mode.startswith("I") and wide.max(initial=0) > 255 else 1.0
            return np.clip(wide / scale, 0, 255).astype(np.uint8)
        if img.mode not in ("L", "RGB"):
            gray = img.mode in ("1", "LA", "La")
            img = img.convert("L" if gray else "RGBA" if img.mode in ("P", "PA") else "RGB")
        return np.asarray(img)
    except Exception as err:  # any failure to decode untrusted bytes means a damaged file
        raise HTTPException(422, f"the image is corrupt: {err}") from None


def _checked_text(text: str, max_chars: int) -> str:
    """The text normalised (control characters become spaces); 422 if too long or nothing is left."""
    if len(text) > max_chars:
        raise HTTPException(422, f"text too long: {len(text)} characters, at most {max_chars} are accepted")
    try:
        return normalise_text(text)
    except ValueError as err:
        raise HTTPException(422, str(err)) from None


def _uploaded(file: UploadFile | None) -> bool:
    return file is not None and bool(file.filename or file.size)


async def _evidence_mask(file: UploadFile, settings: Settings) -> np.ndarray:
    """The `evidence` upload, checked as the image is (422s and 415s name the field)."""
    data = await _read_capped(file, settings.max_upload_bytes)
    try:
        img = _open_image(data, settings.max_image_pixels)
        return await run_in_threadpool(_pixels, img)
    except HTTPException as err:
        raise HTTPException(err.status_code, f"evidence: {err.detail}") from None


def _checked_rationale(rationale: str, max_chars: int) -> str | None:
    """None for a blank field (no ground truth); 422 past the text cap."""
    if not rationale.strip():
        return None
    if len(rationale) > max_chars:
        raise HTTPException(422, f"rationale too long: {len(rationale)} characters, at most {max_chars} are accepted")
    return rationale


def _has_checkpoint(run_dir: Path) -> bool:
    # load_run falls back from best to last, so either one is enough
    return any((run_dir / "checkpoints" / f"{k}.safetensors").exists() for k in ("best", "last"))


async def _loaded(run_dir: Path, run_id: str, which: str) -> LoadedRun:
    missing = HTTPException(409, f"run {run_id!r} has no checkpoint yet: nothing to explain with")
    if not _has_checkpoint(run_dir):
        raise missing
    try:
        return await run_in_threadpool(load_run, run_dir, which)
    except FileNotFoundError:
        raise missing from None
    except Exception as err:  # a corrupt or crafted file: refused as data (safetensors never unpickles)
        raise HTTPException(409, f"run {run_id!r}: its checkpoint cannot be read ({type(err).__name__}); "
                                 "nothing was loaded from it") from None


def model_dir_or_422(settings: Settings, given: str) -> Path:
    """The exported model folder `model_dir` names (resolved): it must lie in the runs directory or a
    data root (checked before anything there is read) and hold an export (config.json + model.safetensors)."""
    try:
        path = Path(given).expanduser()
    except RuntimeError:  # ~ without a home directory to expand to
        path = Path(given)
    if not path.is_absolute():
        path = settings.runs_dir / path
    if outside_roots(path, settings.allowed_run_roots()):
        raise HTTPException(422, f"model_dir: {outside_message(given, settings, 'runs')}")
    if not is_export(path):
        raise HTTPException(422, f"model_dir: {excerpt(given)!r} is not an exported model folder (config.json and "
                                 "model.safetensors, as `rekd export RUN --format hf OUT` writes); a run directory "
                                 "goes by `run_id`")
    return path.resolve()


async def _loaded_export(path: Path, given: str, settings: Settings) -> LoadedRun:
    try:
        n = await run_in_threadpool(weights_parameter_count, path)
    except Exception as err:
        raise HTTPException(409, f"model_dir {excerpt(given)!r}: the exported model cannot be read "
                                 f"({type(err).__name__}); nothing was loaded from it") from None
    if n > settings.max_params:  # as for a run: the model is not built
        raise HTTPException(422, f"model_dir {excerpt(given)!r}: {n:,} parameters is over this server's budget of "
                                 f"{settings.max_params:,} (REKD_MAX_PARAMS)")
    try:
        return await run_in_threadpool(load_run, path)
    except Exception as err:  # a damaged or crafted folder: refused as data (safetensors never unpickles)
        raise HTTPException(409, f"model_dir {excerpt(given)!r}: the exported model cannot be read "
                                 f"({type(err).__name__}); nothing was loaded from it") from None


# --- the route ---------------------------------------------------------------------------------
@router.post("/api/explain", response_model=ExplanationOut,
             responses=error_responses(
                 400, 404, 409, 413, 415, 422,
                 e400="malformed form body",
                 e409="the run has no checkpoint yet, or the exported model folder cannot be read",
                 e413="request body over max_upload_bytes",
                 e415="the file is not a PNG, JPEG, GIF, BMP or WEBP image",
                 e422="invalid run id; neither or both of run_id/model_dir; a model_dir outside the runs "
                      "directory and data roots, that is not an exported model folder, or whose model is over "
                      "max_params; a form field that "
                      "is not UTF-8 (naming it and the byte offset); neither "
                      "or both of file/text; a text too long or with nothing to explain; corrupt or too "
                      "large image or evidence mask; an image for a text run or a text for an image run; an "
                      "`evidence` mask for a text run or a `rationale` for an image run; a rationale substring "
                      "that is not in the text; a baseline_run that is not a completed CLS run on the same data, "
                      "or one given for a CLS run"))
async def explain_input(
    settings: SettingsDep,
    run_id: Annotated[str | None, Form(description="the trained run that explains the input (or give "
                                                   "`model_dir`)")] = None,
    model_dir: Annotated[str | None, Form(
        description="instead of run_id: an exported model folder (`rekd export RUN --format hf OUT`) on the "
                    "server, inside the runs directory or a data root (REKD_DATA_ROOTS); a relative path is "
                    "taken under the runs directory. `checkpoint` does not apply: it holds one")] = None,
    file: Annotated[UploadFile | None, File(description="an image (PNG, JPEG, GIF, BMP, WEBP)")] = None,
    text: Annotated[str | None, Form(description="a text, for text runs")] = None,
    checkpoint: Annotated[Literal["best", "last"], Form(description="which checkpoint explains")] = "best",
    baseline_run: Annotated[str | None, Form(
        description="a completed CLS run on the same data: adds `posthoc`, its integrated-gradients "
                    "selection at the same sparsity")] = None,
    evidence: Annotated[UploadFile | None, File(
        description="image runs, optional: the input's ground truth as a mask image (PNG, JPEG, GIF, BMP, WEBP; "
                    "non-zero pixels = evidence; resized to the input image's size): adds `evidence` and "
                    "`plausibility`")] = None,
    rationale: Annotated[str | None, Form(
        description="text runs, optional: the input's ground truth as highlighted substrings of `text`, one per "
                    "line (exact match; every occurrence counts): adds `evidence` and `plausibility`")] = None,
) -> ExplanationOut:
    """Explain one image (`file`) or one `text` with a trained run: the prediction, and the patches or
    tokens it was computed from (with the teacher's, for an REKD run), and the run's rationale warnings.

    Give exactly one of `run_id` and `model_dir` (an exported model folder), and exactly one of `file`
    and `text`. A text over `max_text_chars` is refused with 422. With the input's ground truth
    (`evidence` for an image, `rationale` for a text) each rationale is scored against it.
    """
    if (run_id is None) == (model_dir is None):
        raise HTTPException(422, "give exactly one model: a `run_id`, or a `model_dir` (an exported model folder)")
    run_dir = run_dir_or_404(settings, run_id) if run_id is not None else model_dir_or_422(settings, model_dir or "")
    has_file = _uploaded(file)
    if has_file == (text is not None):
        raise HTTPException(422, "give exactly one input: an image `file` or a `text`")
    has_evidence = _uploaded(evidence)
    ground = _checked_rationale(rationale, settings.max_text_chars) if rationale is not None else None
    loaded = (await _loaded(run_dir, run_id, checkpoint) if run_id is not None
              else await _loaded_export(run_dir, model_dir or "", settings))
    modality = loaded.featurizer.modality
    if has_evidence and modality != "vision":
        raise HTTPException(422, "evidence: a mask image is ground truth for an image run; this run explains texts "
                                 "(give `rationale`: the highlighted substrings, one per line)")
    if ground is not None and modality != "text":
        raise HTTPException(422, "rationale: highlighted text is ground truth for a text run; this run explains "
                                 "images (upload an `evidence` mask image)")
    baseline = None
    if baseline_run is not None:
        baseline = await run_in_threadpool(baseline_run_or_422, settings, baseline_run, loaded.config,
                                           loaded.class_names)
    truth: Any = ground
    if file is not None and has_file:
        data = await _read_capped(file, settings.max_upload_bytes)
        inp: Any = await run_in_threadpool(_pixels, _open_image(data, settings.max_image_pixels))
        if evidence is not None and has_evidence:
            truth = await _evidence_mask(evidence, settings)
    else:
        inp = _checked_text(text or "", settings.max_text_chars)
    try:
        ex = await run_in_threadpool(explain, loaded, inp, which=checkpoint, baseline=baseline, evidence=truth)
    except ValueError as err:  # explain's own refusal: an image for a text run or the reverse
        raise HTTPException(422, str(err)) from None
    return _to_out(ex)
