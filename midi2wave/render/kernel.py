"""The fused CPU generation kernel: the whole per-sample loop of `Midi2Wave` in one numba function.

One call of `run_streams` generates `n` samples for streams `b0..b1-1` of a batch: per sample, the
input embedding of the previous two samples, every layer (ring-buffer taps of the dilated conv,
gate pre-activation = W_dil . [x(t-(k-1)d) .. x(t-d), x(t)] + cond[l, t // step] (+ excitation),
tanh * sigmoid, residual), the skip projection of all layers as one matrix, the output head and
sampling with the caller's uniform random numbers. The loop runs without the GIL, so a thread per
group of streams uses every core (`generate.py` does that).

Matrix-vector products (`_gemv`) use explicit 16-lane float32 vectors written in LLVM IR (numba
cannot keep an array of accumulators in registers): weights are stored transposed, W^T [I, O]
with O padded to a multiple of 16, in column panels; a block of 64 outputs of up to 4 streams
(AVX-512; 32 outputs of up to 2 streams on AVX2 / NEON machines) accumulates in registers while
the inputs stream past: every weight is loaded once per sample for a block of streams, with no
horizontal sums. Weights may be stored as float32, IEEE float16 (converted with
vcvtph2ps) or int8 with a per-output scale; accumulation is always float32.

Layout (B batch, L layers, R residual, G gate, Hg = G / 2, S skip, K kernel taps, p(n) = n rounded
up to a multiple of 16, Hp = p(Hg)):
- w_dil [L, K*R, 2*Hp]: the input of layer l is the concatenation of taps x(t-(K-1)d) .. x(t-d),
  x(t); output columns 0..Hg-1 are the tanh half, Hp..Hp+Hg-1 the sigmoid half. Its bias is
  folded into the conditioning `cond` [B, N, L, G] by the caller.
- w_res [L, Hg, p(R)] (+ b_res) for the residual; w_skip [L*Hg, p(S)] for the skips of all layers
  at once (their biases summed into b_skip); z [B, L*Hg] holds every layer's gate output.
- w_h1 [S, p(H1)], w_h2 [H1, p(out)]: the head (ReLU before each).
- Each matrix has per-output scales (ones except for int8) and a bias, both padded.

Only the entry points (`run_streams`, `fast_activations`) are cached on disk: numba keeps a cached
function as machine code, which its callers cannot inline, so a helper loaded from the cache would
be called per element. Uncached helpers are compiled into each entry point and inlined; they use
error_model="numpy" like the kernel (see `fast_tanh`).

Numerics: tanh and sigmoid use a clamped rational approximation (`fast_tanh`, max abs error
< 5e-7 over all floats; sigmoid(x) = (1 + tanh(x / 2)) / 2, max abs error < 3e-7), the matvecs
accumulate in float32 in their own order; sampling follows `model/distributions.py` step by step,
so given the same uniforms the samples equal the torch engine's except when a float rounding
difference moves a value across a decision boundary. The sampling helpers are inlined into this
fastmath entry point, which may reorder float sums; they draw from fixed-point integer weights,
whose running sums no reordering changes (`WEIGHT_SCALE`; docs/live.md, "Across processes").
"""

from __future__ import annotations

import hashlib
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from llvmlite import ir

from .. import constants as C
from .. import jit
from ..jit import intrinsic, njit
from ..model.stepping import SteppingWeights, as_f32 as _f32
from ..conditioning.resonators import BankSample, bank_step, empty_bank


def drop_stale_kernel_cache(kernel_dir: Path, resonators_file: Path) -> bool:
    """Delete the cached kernel (`kernel_dir/__pycache__/kernel.run_streams-*.nbi/.nbc`) when
    `resonators_file` changed since it was compiled; returns True when it did. Why: numba keys a cached
    function on its own file alone, while the kernel inlines the bank's jitted helpers from
    resonators.py, so an edit there would otherwise load the old kernel silently. (A cache that
    numba keeps elsewhere, NUMBA_CACHE_DIR or an unwritable package, is not checked.)"""
    cache = kernel_dir / "__pycache__"
    stamp = hashlib.sha1(resonators_file.read_bytes()).hexdigest()
    marker = cache / "kernel.resonators.sha1"
    try:
        if marker.read_text() == stamp:
            return False
    except OSError:
        pass
    for path in cache.glob("kernel.run_streams-*.nb[ic]"):
        path.unlink(missing_ok=True)
    try:
        cache.mkdir(exist_ok=True)
        marker.write_text(stamp)
    except OSError:
        pass
    return True


_HERE = Path(__file__).resolve().parent
drop_stale_kernel_cache(_HERE, _HERE.parent / "conditioning" / "resonators.py")

PRECISIONS = ("fp32", "fp16", "int8")
LANES = 16  # float32 lanes of one IR vector (one AVX-512 register; LLVM splits it on narrower machines)


def _wide_vector_registers() -> bool:
    """Whether the kernel's target has AVX-512 (32 registers of 16 floats) rather than AVX2 / NEON
    (ahead of time: what the build found, `render/native.py`)."""
    if jit.ahead_of_time():
        return bool(jit.built_value("wide_vector_registers"))
    from numba.core import config

    if config.CPU_NAME and config.CPU_NAME != "host":  # NUMBA_CPU_NAME: generic / cross-machine builds
        return "+avx512f" in (config.CPU_FEATURES or "")
    try:
        import llvmlite.binding as ll

        return bool(ll.get_host_cpu_features().get("avx512f", False))
    except Exception:  # pragma: no cover - feature query unavailable
        return False


# Register blocking of `_gemv`: vectors of 16 outputs per block and streams per block. With 32
# zmm registers, 4 x 4 accumulators (64 outputs of 4 streams) + 4 weight vectors fit; with 16
# ymm registers (AVX2; each IR vector is two of them) 2 x 2 do.
_WIDE = _wide_vector_registers()
BLOCK_VECTORS = 4 if _WIDE else 2
MAX_BLOCK_STREAMS = 4 if _WIDE else 2
PANEL = BLOCK_VECTORS * LANES

# ------------------------------------------------------------------------------ vector matvec

_F32 = ir.FloatType()
_VEC = ir.VectorType(_F32, LANES)
_I64 = ir.IntType(64)


def _c64(v: int) -> ir.Constant:
    return ir.Constant(_I64, v)


def _make_block(nv: int, ns: int):
    """An intrinsic computing `nv` vectors (16 * nv outputs) of W^T x for `ns` streams at once.

    block(W, w_off, ldw, I, X, x_off, ldx, Y, y_off, ldy, scale, bias, sb_off, accumulate):
      acc[s, o] = sum_{i < I} W.flat[w_off + i * ldw + o] * X.flat[x_off + s * ldx + i]
      Y.flat[y_off + s * ldy + o] = acc[s, o] * scale.flat[sb_off + o] + bias.flat[sb_off + o]
                                    (+ the old Y value if accumulate)
    for o < 16 * nv, s < ns. W is float32, uint16 (IEEE half bits) or int8; everything else float32.
    """

    @intrinsic
    def block(typingctx, W, w_off, ldw, I, X, x_off, ldx, Y, y_off, ldy, scale, bias, sb_off, accumulate):
        from numba import types
        from numba.core import cgutils

        sig = types.void(W, w_off, ldw, I, X, x_off, ldx, Y, y_off, ldy, scale, bias, sb_off, accumulate)
        wdt = W.dtype
        if wdt == types.float32:
            wvec = _VEC
        elif wdt == types.uint16:
            wvec = ir.VectorType(ir.IntType(16), LANES)
        elif wdt == types.int8:
            wvec = ir.VectorType(ir.IntType(8), LANES)
        else:
            return None

        def codegen(context, builder, signature, args):
            (W_, w_off_, ldw_, I_, X_, x_off_, ldx_, Y_, y_off_, ldy_, sc_, bi_, sb_off_, acc_) = args
            tys = signature.args

            def data(k, value):
                return context.make_array(tys[k])(context, builder, value).data

            wptr, xptr, yptr = data(0, W_), data(4, X_), data(7, Y_)
            sptr, bptr = data(10, sc_), data(11, bi_)

            def to_f32(v):
                if wdt == types.float32:
                    return v
                if wdt == types.uint16:
                    return builder.fpext(builder.bitcast(v, ir.VectorType(ir.HalfType(), LANES)), _VEC)
                return builder.sitofp(v, _VEC)

            def vptr(base, index, vty=_VEC):
                return builder.bitcast(builder.gep(base, [index]), vty.as_pointer())

            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC] * 3),
                                                 f"llvm.fma.v{LANES}f32")
            splat_mask = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
            accs = [[cgutils.alloca_once(builder, _VEC) for _ in range(nv)] for _ in range(ns)]
            for row in accs:
                for a in row:
                    builder.store(ir.Constant(_VEC, None), a)
            with cgutils.for_range(builder, I_) as loop:
                i = loop.index
                wbase = builder.add(w_off_, builder.mul(i, ldw_))
                wv = [to_f32(builder.load(vptr(wptr, builder.add(wbase, _c64(LANES * v)), wvec), align=1))
                      for v in range(nv)]
                for s in range(ns):
                    x_at = builder.add(builder.add(x_off_, builder.mul(_c64(s), ldx_)), i)
                    xi = builder.load(builder.gep(xptr, [x_at]))
                    xb = builder.insert_element(ir.Constant(_VEC, None), xi, ir.Constant(ir.IntType(32), 0))
                    xb = builder.shuffle_vector(xb, ir.Constant(_VEC, None), splat_mask)
                    for v in range(nv):
                        builder.store(builder.call(fma, [wv[v], xb, builder.load(accs[s][v])]), accs[s][v])
            for v in range(nv):
                o = builder.add(sb_off_, _c64(LANES * v))
                sc = builder.load(vptr(sptr, o), align=4)
                bi = builder.load(vptr(bptr, o), align=4)
                for s in range(ns):
                    yp = vptr(yptr, builder.add(builder.add(y_off_, builder.mul(_c64(s), ldy_)), _c64(LANES * v)))
                    r = builder.call(fma, [builder.load(accs[s][v]), sc, bi])
                    with builder.if_else(acc_) as (then, otherwise):
                        with then:
                            builder.store(builder.fadd(r, builder.load(yp, align=4)), yp, align=4)
                        with otherwise:
                            builder.store(r, yp, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return block


_blk_s4, _blk_s2, _blk_s1 = (_make_block(BLOCK_VECTORS, 4), _make_block(BLOCK_VECTORS, 2),
                             _make_block(BLOCK_VECTORS, 1))
_tail_s4, _tail_s2, _tail_s1 = _make_block(1, 4), _make_block(1, 2), _make_block(1, 1)


@njit(boundscheck=False, nogil=True, error_model="numpy")
def _gemv(W, w_off, I, Op, scale, sb_off, bias, X, x_off, ldx, Y, y_off, ldy, b0, b1, accumulate):
    """Y[b, o] (+)= scale[o] * sum_{i<I} W^T[i, o] X[b, i] + bias[o] for o < Op (a multiple of 16), b0 <= b < b1.

    W^T is stored in column panels (see `_panels`): the panel of columns ob..ob+w-1 (w = PANEL, or
    16 for the last ones) is a contiguous [I, w] block at W.flat[w_off + ob * I], so each block
    of outputs streams its weights sequentially, once for up to MAX_BLOCK_STREAMS streams. Stream
    b's input is at X.flat[x_off + b * ldx], its output at Y.flat[y_off + b * ldy]; scale / bias at
    .flat[sb_off + o].
    """
    ob = 0
    while ob + PANEL <= Op:
        wo = w_off + ob * I
        b = b0
        while MAX_BLOCK_STREAMS >= 4 and b + 4 <= b1:
            _blk_s4(W, wo, PANEL, I, X, x_off + b * ldx, ldx, Y, y_off + b * ldy + ob, ldy, scale, bias,
                    sb_off + ob, accumulate)
            b += 4
        while b + 2 <= b1:
            _blk_s2(W, wo, PANEL, I, X, x_off + b * ldx, ldx, Y, y_off + b * ldy + ob, ldy, scale, bias,
                    sb_off + ob, accumulate)
            b += 2
        while b < b1:
            _blk_s1(W, wo, PANEL, I, X, x_off + b * ldx, ldx, Y, y_off + b * ldy + ob, ldy, scale, bias,
                    sb_off + ob, accumulate)
            b += 1
        ob += PANEL
    while ob < Op:
        wo = w_off + ob * I
        b = b0
        while MAX_BLOCK_STREAMS >= 4 and b + 4 <= b1:
            _tail_s4(W, wo, LANES, I, X, x_off + b * ldx, ldx, Y, y_off + b * ldy + ob, ldy, scale, bias,
                     sb_off + ob, accumulate)
            b += 4
        while b + 2 <= b1:
            _tail_s2(W, wo, LANES, I, X, x_off + b * ldx, ldx, Y, y_off + b * ldy + ob, ldy, scale, bias,
                     sb_off + ob, accumulate)
            b += 2
        while b < b1:
            _tail_s1(W, wo, LANES, I, X, x_off + b * ldx, ldx, Y, y_off + b * ldy + ob, ldy, scale, bias,
                     sb_off + ob, accumulate)
            b += 1
        ob += LANES


def _panels(wt: np.ndarray) -> np.ndarray:
    """[..., I, Op] -> the same shape holding `_gemv`'s column panels: [I, PANEL] blocks, then [I, 16] ones."""
    I, Op = wt.shape[-2:]
    out = np.empty(wt.shape[:-2] + (I * Op,), wt.dtype)
    ob = 0
    while ob < Op:
        w = PANEL if ob + PANEL <= Op else LANES
        out[..., ob * I:(ob + w) * I] = wt[..., :, ob:ob + w].reshape(wt.shape[:-2] + (I * w,))
        ob += w
    return out.reshape(wt.shape)


# ------------------------------------------------------------------------------- activations

_TANH_CLAMP = np.float32(7.90531110763549805)
# Odd numerator / even denominator of a rational minimax fit of tanh on [-7.9, 7.9] (the float
# approximation of Eigen's generic_fast_tanh_float); beyond the clamp tanh is 1 within 3e-7.
_A1, _A3, _A5, _A7 = (np.float32(4.89352455891786e-03), np.float32(6.37261928875436e-04),
                      np.float32(1.48572235717979e-05), np.float32(5.12229709037114e-08))
_A9, _A11, _A13 = (np.float32(-8.60467152213735e-11), np.float32(2.00018790482477e-13),
                   np.float32(-2.76076847742355e-16))
_B0, _B2, _B4, _B6 = (np.float32(4.89352518554385e-03), np.float32(2.26843463243900e-03),
                      np.float32(1.18534705686654e-04), np.float32(1.19825839466702e-06))
FAST_TANH_MAX_ABS_ERROR = 5e-7
FAST_SIGMOID_MAX_ABS_ERROR = 3e-7


@njit(fastmath=True, error_model="numpy")
def fast_tanh(x):
    """tanh for finite float32 x. Full fast-math (with 'nnan' / 'ninf' off the clamp does not
    vectorise) and error_model="numpy" (the default "python" model guards the division with a
    zero check, which also stops vectorisation, even once inlined into a "numpy"-model caller)."""
    x = min(max(x, -_TANH_CLAMP), _TANH_CLAMP)
    x2 = x * x
    p = _A13
    p = p * x2 + _A11
    p = p * x2 + _A9
    p = p * x2 + _A7
    p = p * x2 + _A5
    p = p * x2 + _A3
    p = p * x2 + _A1
    q = _B6
    q = q * x2 + _B4
    q = q * x2 + _B2
    q = q * x2 + _B0
    return x * p / q


@njit(fastmath=True, error_model="numpy")
def fast_sigmoid(x):
    return np.float32(0.5) + np.float32(0.5) * fast_tanh(np.float32(0.5) * x)


@njit(fastmath=True, cache=True, error_model="numpy")
def fast_activations(x, out):
    """out[0] = fast_tanh(x), out[1] = fast_sigmoid(x) over a float32 array (for the error-bound test)."""
    for i in range(x.shape[0]):
        out[0, i] = fast_tanh(x[i])
        out[1, i] = fast_sigmoid(x[i])


# ------------------------------------------------------------------------------------ sampling


# The sampler draws from fixed-point weights: exp(x - max), in (0, 1], times 2**40 and truncated (a
# class under 2**-40 of the likeliest's is never drawn). Why integers: their running sums are the
# same in any order of addition, and inlined into the fastmath kernel a float sum is vectorized,
# with lane arrangements that a fresh compile and numba's cache chose differently (docs/live.md,
# "Across processes").
WEIGHT_SCALE = float(2 ** 40)


@njit(boundscheck=False, error_model="numpy")
def _weight(e):
    """The fixed-point weight of an unnormalised probability e in [0, 1] (see WEIGHT_SCALE)."""
    return np.int64(np.float64(e) * WEIGHT_SCALE)


@njit(boundscheck=False, error_model="numpy")
def _select(e, n, u):
    """Inverse-CDF index over unnormalised weights e[:n] whose largest is 1: how many running sums
    of their fixed-point weights are <= u times their total (clamped to n - 1), as torch's `_select`
    counts the normalised running sums <= u (the same draw but where rounding moves a sum across u)."""
    total = np.int64(0)
    for i in range(n):
        total += _weight(e[i])
    threshold = np.int64(np.float64(u) * np.float64(total))
    c = np.int64(0)
    k = 0
    for i in range(n):
        c += _weight(e[i])
        if c <= threshold:
            k += 1
    return min(k, n - 1)


@njit(boundscheck=False, error_model="numpy")
def _cut_tail(e, n, min_p):
    """Min-p on unnormalised weights e[:n] whose largest is 1 (exp(x - max)): zero those below
    min_p (`distributions._cut_tail`). A pass of its own, taken only when min_p > 0, so that the
    plain sampler is the same code, bit for bit and in speed."""
    for i in range(n):
        if e[i] < min_p:
            e[i] = np.float32(0.0)


@njit(boundscheck=False, error_model="numpy")
def _sample_mol(par, K, u_comp, u_val, temperature, min_p, probs):
    """`distributions.sample_mol` for one row: returns the PCM level (-32768..32767)."""
    m = par[0]
    for i in range(1, K):
        m = max(m, par[i])
    for i in range(K):
        probs[i] = np.exp(par[i] - m)
    if min_p > 0:
        _cut_tail(probs, K, min_p)
    k = _select(probs, K, u_comp)
    mean = par[K + k]
    log_scale = max(par[2 * K + k], np.float32(C.LOG_SCALE_MIN))
    if min_p > 0:  # the value from [u0, 1 - u0], where 4 u0 (1 - u0) = min_p
        u0 = (np.float32(1.0) - np.sqrt(np.float32(1.0) - min_p)) / np.float32(2.0)
        u_val = u0 + (np.float32(1.0) - np.float32(2.0) * u0) * u_val
    u = min(max(u_val, np.float32(1e-7)), np.float32(1 - 1e-7))
    x = mean + temperature * np.exp(log_scale) * (np.log(u) - np.log1p(-u))
    x = min(max(x, np.float32(-1.0)), np.float32(1.0))
    level = np.rint(x * np.float32(C.PCM_SCALE))
    level = min(max(level, np.float32(-C.PCM_SCALE)), np.float32(C.PCM_SCALE - 1))
    return int(level)


@njit(boundscheck=False, error_model="numpy")
def _sample_mulaw(par, Q, u_comp, temperature, min_p, probs):
    """`distributions.sample_mulaw` for one row: returns the mu-law class."""
    m = par[0] / temperature
    for i in range(1, Q):
        m = max(m, par[i] / temperature)
    for i in range(Q):
        probs[i] = np.exp(par[i] / temperature - m)
    if min_p > 0:
        _cut_tail(probs, Q, min_p)
    return _select(probs, Q, u_comp)


# ---------------------------------------------------------------------------------------- kernel


# The kernel's arguments, grouped (numba reads named tuples of arrays and scalars as one argument).
# The model's packed weights (`PackedModel.kernel_weights`; see the layout above):
KernelWeights = namedtuple("KernelWeights", (
    "input_kind", "output_kind", "n_mix", "n_out", "dil", "ring_off", "ring_size", "emb_prev", "emb_curr", "in_w",
    "in_b", "w_dil", "s_dil", "zero_g", "w_res", "s_res", "b_res", "w_skip", "s_skip", "b_skip", "w_h1", "s_h1",
    "b_h1", "w_h2", "s_h2", "b_h2", "exc_w", "pcm_to_class", "class_to_value"))
# One call's samples, their inputs and where their outputs go:
KernelBlock = namedtuple("KernelBlock", (
    "t0", "n", "n_prime", "collect", "temperature", "has_temps", "temps", "cond", "cond_step", "cond_n0", "has_exc",
    "exc", "uniforms", "prime_val", "prime_cls", "out", "params_out", "min_p"))
# The streams' stepping state and scratch (`NumbaState`):
KernelState = namedtuple("KernelState", ("ring", "prev_val", "prev_cls", "x", "inp", "h", "z", "skip", "hid", "par",
                                         "probs"))


@njit(fastmath=True, cache=True, nogil=True, boundscheck=False, error_model="numpy")
def run_streams(b0, b1, weights, block, state, has_bank, innovation_input, bank, bank_streams, bank_sample):
    """Generate samples t0 .. t0+n-1 (global times) of streams b0..b1-1; see the module docstring.

    weights: `KernelWeights`; block: `KernelBlock` (t0, n, n_prime, collect, temperature, ..., out,
    params_out as below); state: `KernelState`; bank, bank_streams, bank_sample: the
    `resonators.BankArrays`, `BankStreams` and `BankSample` of the streams' `BankBatch`.

    input_kind: 0 mu-law embedding, 1 scalar. output_kind: 0 mixture of logistics, 1 mu-law.
    cond [B, N, L, G]: gate conditioning incl. the dilated conv's bias; sample t uses
    cond[:, t // cond_step - cond_n0]. exc [B, n] (used if has_exc), uniforms [B, n, 2].
    The first n_prime samples are teacher-forced from prime_val / prime_cls [B, >=n_prime].
    With `has_temps`, sample t of stream b is drawn at temperature temps[b, tt] instead of `temperature`;
    min_p cuts the distribution's tail (`distributions.sample_mulaw`, 0: none).
    out [B, n] gets the samples; with `collect`, params_out [B, n, n_out] gets the head's outputs.
    With `has_bank` (a model with the MIDI resonator bank, see resonators.py) the head's sample is
    the innovation: each sample goes through `resonators.bank_step` (the bank step the torch engine
    runs too: prediction, gain, noise shaping, direct share, 16-bit audio, the oscillators' update),
    and with `innovation_input` the network reads the bank's innovation instead of the audio.
    State (updated in place): ring [B, slots, R] ring buffers of every layer's past inputs,
    prev_val / prev_cls [B, 2] the values and mu-law classes of samples t-1 and t-2.
    Scratch: x [B, p(R)], inp [B, K*R], h [B, 2*Hp], z [B, L*Hg], skip [B, p(S)], hid [B, p(H1)],
    par [B, p(out)], probs [B, >= out].
    """
    (input_kind, output_kind, n_mix, n_out, dil, ring_off, ring_size, emb_prev, emb_curr, in_w, in_b, w_dil, s_dil,
     zero_g, w_res, s_res, b_res, w_skip, s_skip, b_skip, w_h1, s_h1, b_h1, w_h2, s_h2, b_h2, exc_w, pcm_to_class,
     class_to_value) = weights
    (t0, n, n_prime, collect, temperature, has_temps, temps, cond, cond_step, cond_n0, has_exc, exc, uniforms,
     prime_val, prime_cls, out, params_out, min_p) = block
    ring, prev_val, prev_cls, x, inp, h, z, skip, hid, par, probs = state
    L = w_dil.shape[0]
    KR = w_dil.shape[1]
    Gp = w_dil.shape[2]
    Hp = Gp // 2
    G = cond.shape[3]
    Hg = G // 2
    R = in_b.shape[0]
    K = KR // R
    B = x.shape[0]
    Rp = x.shape[1]
    S = w_h1.shape[0]
    Sp = skip.shape[1]
    H1 = w_h2.shape[0]
    H1p = hid.shape[1]
    Op = par.shape[1]
    LH = L * Hg
    # 3-d views so that vectorised loops index with their plain loop variable (a runtime offset
    # added to it would cost a negative-index check per element)
    inp3 = inp.reshape((B, K, R))
    h3 = h.reshape((B, 2, Hp))
    z3 = z.reshape((B, L, Hg))
    cond5 = cond.reshape((cond.shape[0], cond.shape[1], L, 2, Hg))
    exc_w3 = exc_w.reshape((L, 2, Hg))
    for tt in range(n):
        t = t0 + tt
        ci = t // cond_step - cond_n0
        primed = tt < n_prime
        # ---- input layer: samples t-1 (prev[.., 0]) and t-2 (prev[.., 1])
        for b in range(b0, b1):
            if input_kind == 0:
                kc = prev_cls[b, 0]
                kp = prev_cls[b, 1]
                for r in range(R):
                    x[b, r] = emb_curr[kc, r] + emb_prev[kp, r] + in_b[r]
            else:
                a1 = prev_val[b, 0]
                a2 = prev_val[b, 1]
                for r in range(R):
                    x[b, r] = in_w[0, r] * a2 + in_w[1, r] * a1 + in_b[r]
        # ---- residual layers
        for l in range(L):
            d = dil[l]
            size = ring_size[l]
            off = ring_off[l]
            for b in range(b0, b1):
                for m in range(K - 1, 0, -1):  # oldest tap first: its slot is the one overwritten below
                    slot = off + (t - m * d + size) % size
                    tap = K - 1 - m
                    for r in range(R):
                        inp3[b, tap, r] = ring[b, slot, r]
                slot = off + t % size
                for r in range(R):
                    inp3[b, K - 1, r] = x[b, r]
                    ring[b, slot, r] = x[b, r]
            _gemv(w_dil, l * KR * Gp, KR, Gp, s_dil, l * Gp, zero_g, inp, 0, KR, h, 0, Gp, b0, b1, False)
            for b in range(b0, b1):
                e = exc[b, tt] if has_exc else np.float32(0.0)
                for j in range(Hg):
                    a = h3[b, 0, j] + cond5[b, ci, l, 0, j] + exc_w3[l, 0, j] * e
                    g = h3[b, 1, j] + cond5[b, ci, l, 1, j] + exc_w3[l, 1, j] * e
                    z3[b, l, j] = fast_tanh(a) * fast_sigmoid(g)
            if l < L - 1:
                _gemv(w_res, l * Hg * Rp, Hg, Rp, s_res, l * Rp, b_res, z, l * Hg, LH, x, 0, Rp, b0, b1, True)
        # ---- skips, head, sampling
        if collect or not primed:
            _gemv(w_skip, 0, LH, Sp, s_skip, 0, b_skip, z, 0, LH, skip, 0, Sp, b0, b1, False)
            for b in range(b0, b1):
                for i in range(Sp):
                    skip[b, i] = max(skip[b, i], np.float32(0.0))
            _gemv(w_h1, 0, S, H1p, s_h1, 0, b_h1, skip, 0, Sp, hid, 0, H1p, b0, b1, False)
            for b in range(b0, b1):
                for i in range(H1p):
                    hid[b, i] = max(hid[b, i], np.float32(0.0))
            _gemv(w_h2, 0, H1, Op, s_h2, 0, b_h2, hid, 0, H1p, par, 0, Op, b0, b1, False)
            if collect:
                for b in range(b0, b1):
                    for i in range(n_out):
                        params_out[b, tt, i] = par[b, i]
        for b in range(b0, b1):
            if primed:
                v = prime_val[b, tt]
                k = prime_cls[b, tt]
            elif output_kind == 0:
                level = _sample_mol(par[b], n_mix, uniforms[b, tt, 0], uniforms[b, tt, 1],
                                    temps[b, tt] if has_temps else temperature, min_p, probs[b])
                v = np.float32(level) / np.float32(C.PCM_SCALE)
                k = pcm_to_class[level + 32768]
            else:
                k = _sample_mulaw(par[b], n_out, uniforms[b, tt, 0], temps[b, tt] if has_temps else temperature,
                                  min_p, probs[b])
                v = class_to_value[k]
            if has_bank:
                bank_sample.value[b] = v
            else:
                out[b, tt] = v
                prev_val[b, 1] = prev_val[b, 0]
                prev_val[b, 0] = v
                prev_cls[b, 1] = prev_cls[b, 0]
                prev_cls[b, 0] = k
        if has_bank:  # the sample is the innovation: the audio and what the network reads come from the bank
            bank_step(t, b0, b1, primed, innovation_input, bank, bank_streams, bank_sample)
            for b in range(b0, b1):
                v = bank_sample.value[b]
                k = prime_cls[b, tt] if primed else pcm_to_class[bank_sample.level[b] + 32768]
                out[b, tt] = v
                prev_val[b, 1] = prev_val[b, 0]
                prev_cls[b, 1] = prev_cls[b, 0]
                if innovation_input:
                    prev_val[b, 0] = bank_sample.read[b]
                    prev_cls[b, 0] = pcm_to_class[bank_sample.read_level[b] + 32768]
                else:
                    prev_val[b, 0] = v
                    prev_cls[b, 0] = k


# ------------------------------------------------------------------------------- packed weights


def _pad16(n: int) -> int:
    return -(-n // LANES) * LANES


def _store(wt: np.ndarray, precision: str) -> tuple[np.ndarray, np.ndarray]:
    """Transposed weights [..., I, Op] float32 -> (stored weights in panels, per-output scales [..., Op])."""
    wt = np.ascontiguousarray(wt, dtype=np.float32)
    ones = np.ones(wt.shape[:-2] + wt.shape[-1:], np.float32)
    if precision == "fp32":
        return _panels(wt), ones
    if precision == "fp16":
        return _panels(wt.astype(np.float16).view(np.uint16)), ones
    if precision == "int8":
        amax = np.abs(wt).max(axis=-2)
        scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.rint(wt / scale[..., None, :]), -127, 127).astype(np.int8)
        return _panels(q), scale
    raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def _transpose_pad(w: np.ndarray, op: int) -> np.ndarray:
    """[..., O, I] -> [..., I, op] (zero columns beyond O)."""
    wt = np.swapaxes(w, -1, -2)
    out = np.zeros(wt.shape[:-1] + (op,), np.float32)
    out[..., : wt.shape[-1]] = wt
    return out


def _pad(v: np.ndarray, op: int) -> np.ndarray:
    out = np.zeros(v.shape[:-1] + (op,), np.float32)
    out[..., : v.shape[-1]] = v
    return out


@dataclass
class PackedModel:
    """A `Midi2Wave`'s weights as the kernel's contiguous arrays (a snapshot: re-pack after training)."""

    input_kind: int
    output_kind: int
    n_mix: int
    n_out: int
    kernel_size: int
    dil: np.ndarray
    ring_off: np.ndarray
    ring_size: np.ndarray
    n_slots: int
    emb_prev: np.ndarray
    emb_curr: np.ndarray
    in_w: np.ndarray
    in_b: np.ndarray
    w_dil: np.ndarray
    s_dil: np.ndarray
    b_dil: np.ndarray  # [L, G] float32, folded into the conditioning by the caller
    zero_g: np.ndarray  # [L, 2*Hp] zeros: the dilated conv's bias slot in `_gemv`
    w_res: np.ndarray
    s_res: np.ndarray
    b_res: np.ndarray
    w_skip: np.ndarray
    s_skip: np.ndarray
    b_skip: np.ndarray
    w_h1: np.ndarray
    s_h1: np.ndarray
    b_h1: np.ndarray
    w_h2: np.ndarray
    s_h2: np.ndarray
    b_h2: np.ndarray
    exc_w: np.ndarray
    has_exc_weight: bool
    pcm_to_class: np.ndarray
    class_to_value: np.ndarray
    silence_class: int
    precision: str
    residual_channels: int
    gate_channels: int
    skip_channels: int
    head_channels: int

    @property
    def n_layers(self) -> int:
        return self.w_dil.shape[0]

    def kernel_weights(self) -> KernelWeights:
        """The arrays and settings `run_streams` reads."""
        return KernelWeights(*(getattr(self, f) for f in KernelWeights._fields))

    @property
    def weight_bytes(self) -> int:
        """Bytes of the matrices streamed every sample."""
        return sum(a.nbytes for a in (self.w_dil, self.w_res, self.w_skip, self.w_h1, self.w_h2))


MulawTables = namedtuple("MulawTables", ("pcm_to_class", "class_to_value", "silence_class"))


def mulaw_tables(classes: int) -> MulawTables:
    """The kernel's mu-law tables: class of each 16-bit level [65536] int64, value of each class [Q]
    float32, class of silence (from `model.distributions.mulaw_tables`, which imports torch: the live
    engine's snapshot carries them instead, `render/livemodel.py`)."""
    from ..model.distributions import mulaw_tables as torch_tables

    pcm_to_class, class_to_value, silence = torch_tables(classes)
    return MulawTables(pcm_to_class.numpy().astype(np.int64), class_to_value.numpy().astype(np.float32), int(silence))


def pack_weights(weights: SteppingWeights, precision: str = "fp32", tables: MulawTables | None = None) -> PackedModel:
    """Split, transpose, pad and store a model's stepping weights (`model.stepping.stepping_weights`)
    for `run_streams`.

    precision: "fp32" (exact), "fp16" (IEEE half: relative weight error <= 2**-11, half the bytes)
    or "int8" (per-output scale: abs error <= max |w| of the output / 254, a quarter of the bytes).
    Embeddings, biases, conditioning and activations stay float32; accumulation is float32.
    weights: torch tensors or numpy arrays (`SteppingWeights.numpy()`). tables: `mulaw_tables(Q)`
    when the caller has them (computed here otherwise).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    sw = weights
    R, G, S, L, K = sw.residual_channels, sw.gate_channels, sw.skip_channels, sw.n_layers, sw.kernel_size
    Hg = G // 2
    Hp, Rp, Sp = _pad16(Hg), _pad16(R), _pad16(S)
    dil = np.array(sw.dilations, np.int64)
    ring_size = (K - 1) * dil
    ring_off = np.concatenate([[0], np.cumsum(ring_size)[:-1]]).astype(np.int64)

    in_b = _f32(sw.input_bias)
    if sw.input_kind == "mulaw_embedding":
        emb_prev, emb_curr = _f32(sw.embed_prev), _f32(sw.embed_curr)
        in_w = np.zeros((2, R), np.float32)
    else:
        emb_prev = emb_curr = np.zeros((1, R), np.float32)
        in_w = np.ascontiguousarray(_f32(sw.input_weight).T)  # row 0 multiplies sample t-2, row 1 sample t-1

    # dilated conv [L, G, R, K] -> [L, K*R, 2*Hp]: input column block j is tap x(t - (K-1-j) d);
    # output columns: tanh half at 0.., sigmoid half at Hp..
    wd = _f32(sw.dilated_weight).transpose(0, 1, 3, 2).reshape(L, G, K * R).transpose(0, 2, 1)  # [L, K*R, G]
    w_dil = np.zeros((L, K * R, 2 * Hp), np.float32)
    w_dil[:, :, :Hg] = wd[:, :, :Hg]
    w_dil[:, :, Hp:Hp + Hg] = wd[:, :, Hg:]
    b_dil = _f32(sw.dilated_bias)
    w_out, b_out = _f32(sw.out_weight), _f32(sw.out_bias)  # [L, R+S, Hg], [L, R+S]
    w_res = np.stack([_transpose_pad(w[:R], Rp) for w in w_out])  # [L, Hg, Rp]
    b_res = np.stack([_pad(b[:R], Rp) for b in b_out])
    w_skip = np.concatenate([_transpose_pad(w[R:], Sp) for w in w_out], axis=0)  # [L*Hg, Sp]
    b_skip = _pad(np.sum([b[R:] for b in b_out], axis=0).astype(np.float32), Sp)
    H1, n_out = sw.head_channels, sw.output_channels
    H1p, Op = _pad16(H1), _pad16(n_out)
    w_h1, b_h1 = _transpose_pad(_f32(sw.head_hidden_weight), H1p), _pad(_f32(sw.head_hidden_bias), H1p)
    w_h2, b_h2 = _transpose_pad(_f32(sw.head_out_weight), Op), _pad(_f32(sw.head_out_bias), Op)

    has_exc = sw.excitation_weight is not None
    exc_w = _f32(sw.excitation_weight) if has_exc else np.zeros((L, G), np.float32)

    pcm_to_class, class_to_value, silence_class = tables if tables is not None else mulaw_tables(sw.mulaw_classes)

    (w_dil, s_dil), (w_res, s_res) = _store(w_dil, precision), _store(w_res, precision)
    (w_skip, s_skip), (w_h1, s_h1), (w_h2, s_h2) = (_store(w_skip, precision), _store(w_h1, precision),
                                                    _store(w_h2, precision))
    return PackedModel(
        input_kind=0 if sw.input_kind == "mulaw_embedding" else 1,
        output_kind=0 if sw.output_kind == "mol" else 1,
        n_mix=sw.n_mixtures, n_out=n_out, kernel_size=K,
        dil=dil, ring_off=ring_off, ring_size=ring_size.astype(np.int64), n_slots=int(ring_size.sum()),
        emb_prev=emb_prev, emb_curr=emb_curr, in_w=in_w, in_b=in_b,
        w_dil=w_dil, s_dil=s_dil, b_dil=b_dil, zero_g=np.zeros((L, 2 * Hp), np.float32),
        w_res=w_res, s_res=s_res, b_res=b_res, w_skip=w_skip, s_skip=s_skip, b_skip=b_skip,
        w_h1=w_h1, s_h1=s_h1, b_h1=b_h1, w_h2=w_h2, s_h2=s_h2, b_h2=b_h2,
        exc_w=exc_w, has_exc_weight=has_exc,
        pcm_to_class=pcm_to_class, class_to_value=class_to_value, silence_class=silence_class,
        precision=precision, residual_channels=R, gate_channels=G, skip_channels=S, head_channels=H1,
    )


_EMPTY_2D = np.zeros((1, 1), np.float32)
_NO_BANK = empty_bank()


class NumbaState:
    """Ring buffers, previous samples and scratch of a batch of streams (see `run_streams`)."""

    def __init__(self, packed: PackedModel, batch_size: int) -> None:
        B, R, L, G = batch_size, packed.residual_channels, packed.n_layers, packed.gate_channels
        self.packed = packed
        self.batch_size = B
        self.ring = np.zeros((B, max(packed.n_slots, 1), R), np.float32)
        self.prev_val = np.zeros((B, 2), np.float32)
        self.prev_cls = np.zeros((B, 2), np.int64)
        self.x = np.zeros((B, _pad16(R)), np.float32)
        self.inp = np.zeros((B, packed.kernel_size * R), np.float32)
        self.h = np.zeros((B, 2 * _pad16(G // 2)), np.float32)
        self.z = np.zeros((B, L * (G // 2)), np.float32)
        self.skip = np.zeros((B, _pad16(packed.skip_channels)), np.float32)
        self.hid = np.zeros((B, _pad16(packed.head_channels)), np.float32)
        self.par = np.zeros((B, _pad16(packed.n_out)), np.float32)
        self.probs = np.zeros((B, max(packed.n_out, 1)), np.float32)
        self.bank_sample = BankSample(np.zeros(B, np.float32), np.zeros(B, np.int64), np.zeros(B, np.float32),
                                      np.zeros(B, np.int64))
        self.weights = packed.kernel_weights()
        self.state = KernelState(self.ring, self.prev_val, self.prev_cls, self.x, self.inp, self.h, self.z, self.skip,
                                 self.hid, self.par, self.probs)
        self.innovation_input = False  # set by the engine for models that read the bank's innovation
        self.reset()

    def reset(self) -> None:
        self.ring.fill(0.0)
        self.prev_val.fill(0.0)
        self.prev_cls.fill(self.packed.silence_class)

    def run(self, b0: int, b1: int, t0: int, n: int, n_prime: int, collect: bool, temperature: float,
            cond: np.ndarray, cond_step: int, cond_n0: int, exc: np.ndarray | None, uniforms: np.ndarray,
            prime_val: np.ndarray, prime_cls: np.ndarray, out: np.ndarray, params_out: np.ndarray,
            bank=None, temps: np.ndarray | None = None, min_p: float = 0.0) -> None:
        """Run the kernel on streams b0..b1-1 (releases the GIL: call from one thread per stream group).
        `bank`: a `resonators.BankBatch` for models with the resonator bank; `min_p`: the sampler's
        tail cut (`distributions.sample_mulaw`)."""
        has_exc = exc is not None and self.packed.has_exc_weight
        block = KernelBlock(t0, n, n_prime, collect, np.float32(temperature), temps is not None,
                            temps if temps is not None else _EMPTY_2D, cond, cond_step, cond_n0, has_exc,
                            exc if exc is not None else _EMPTY_2D, uniforms, prime_val, prime_cls, out, params_out,
                            np.float32(min_p))
        banks = bank if bank is not None else _NO_BANK
        run_streams(b0, b1, self.weights, block, self.state, bank is not None, bool(self.innovation_input),
                    banks.arrays, banks.streams, self.bank_sample)


def kernel_signatures() -> int:
    """How many specialisations of the kernel this process has compiled or loaded from the disk cache."""
    return len(run_streams.signatures)


def max_abs_error_of_fast_activations(x: np.ndarray) -> tuple[float, float]:
    """(max |fast_tanh - tanh|, max |fast_sigmoid - sigmoid|) over float32 points x (float64 reference)."""
    x = np.ascontiguousarray(x, np.float32)
    out = np.empty((2, x.shape[0]), np.float32)
    fast_activations(x, out)
    xd = x.astype(np.float64)
    with np.errstate(over="ignore"):
        sig_ref = 1.0 / (1.0 + np.exp(-xd))
    return float(np.abs(out[0] - np.tanh(xd)).max()), float(np.abs(out[1] - sig_ref).max())


__all__ = ["PRECISIONS", "PackedModel", "NumbaState", "KernelWeights", "KernelBlock", "KernelState", "pack_weights",
           "run_streams", "fast_tanh", "fast_sigmoid", "FAST_TANH_MAX_ABS_ERROR", "FAST_SIGMOID_MAX_ABS_ERROR",
           "max_abs_error_of_fast_activations", "kernel_signatures"]
