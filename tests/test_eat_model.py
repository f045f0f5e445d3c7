"""The EAT encoder against a reference forward written from the spec (section 2), and against the
plausible wrong builds it must not be."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from eat_checkpoints import FAIRSEQ_TO_CANONICAL, SIZES, _encoder_weights, to_canonical  # noqa: E402

from frozenasd.backbones.eat_export.model import EATConfig, EATEncoder, expected_shapes  # noqa: E402
from frozenasd.errors import ModelError  # noqa: E402

pytestmark = pytest.mark.torch


def make_weights(size: str = "tiny", rows: int = 6144, seed: int = 0) -> tuple[dict, int]:
    """Random weights (canonical names) with non-trivial LayerNorm parameters, and the head count."""
    raw = _encoder_weights(SIZES[size], rows, seed)
    return to_canonical(raw, FAIRSEQ_TO_CANONICAL), SIZES[size].num_heads


# --- reference: plain tensor operations, one step of the spec after the other ------------------------


def layer_norm(x, w, b, eps=1e-6):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def gelu_exact(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def attention(x, sd, p, heads):
    b, n, c = x.shape
    hd = c // heads
    qkv = (x @ sd[p + "attn.qkv.weight"].T + sd[p + "attn.qkv.bias"]).reshape(b, n, 3, heads, hd)
    qkv = qkv.permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = (q * hd**-0.5) @ k.transpose(-2, -1)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
    out = (probs @ v).transpose(1, 2).reshape(b, n, c)
    return out @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]


def mlp(x, sd, p):
    h = gelu_exact(x @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
    return h @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]


def patch_tokens(x, sd):
    """Conv2d(1, D, 16, stride 16) as an explicit unfold + matmul; token n = t * 8 + f."""
    b, _, t, f = x.shape
    w = sd["patch_embed.weight"]
    d = w.shape[0]
    patches = x[:, 0].reshape(b, t // 16, 16, f // 16, 16).permute(0, 1, 3, 2, 4).reshape(b, -1, 256)
    return patches @ w.reshape(d, 256).T + sd["patch_embed.bias"]


def reference(
    x,
    sd,
    heads,
    *,
    post_norm=True,
    final_norm=False,
    cls_position=False,
    pre_norm=True,
    table=None,
    keep=(),
):
    """EAT's extract_features by the spec; the keyword switches build the wrong variants."""
    tokens = patch_tokens(x, sd)
    b, n, d = tokens.shape
    table = sd["positions"] if table is None else table
    cls = sd["cls_token"].expand(b, -1, -1)
    if cls_position:  # timm-ViT style: CLS first, then positions for all tokens
        x = torch.cat([cls, tokens], 1) + table[:, : n + 1]
    else:
        x = torch.cat([cls, tokens + table[:, :n]], 1)
    if pre_norm:
        x = layer_norm(x, sd["pre_norm.weight"], sd["pre_norm.bias"])
    kept = []
    depth = sum(1 for k in sd if k.endswith(".attn.qkv.weight"))
    for i in range(depth):
        p = f"blocks.{i}."
        n1 = (sd[p + "norm1.weight"], sd[p + "norm1.bias"])
        n2 = (sd[p + "norm2.weight"], sd[p + "norm2.bias"])
        if post_norm:
            x = layer_norm(x + attention(x, sd, p, heads), *n1)
            x = layer_norm(x + mlp(x, sd, p), *n2)
        else:
            x = x + attention(layer_norm(x, *n1), sd, p, heads)
            x = x + mlp(layer_norm(x, *n2), sd, p)
        if i in keep:
            kept.append(x)
    if final_norm:
        x = layer_norm(x, sd["pre_norm.weight"] * 0 + 1, sd["pre_norm.bias"] * 0)
    return (x, kept) if keep else x


def fbank(batch, frames, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, frames, 128, generator=g)


@pytest.fixture(scope="module")
def tiny():
    sd, heads = make_weights()
    config = EATConfig.from_state_dict(sd, num_heads=heads)
    return sd, heads, EATEncoder.from_state_dict(sd, config)


@pytest.mark.parametrize("frames", [16, 512, 1024, 2048])
def test_matches_reference_at_every_length(tiny, frames):
    sd, heads, model = tiny
    x = fbank(2, frames)
    with torch.no_grad():
        got = model(x)
    want = reference(x, sd, heads)
    assert got.shape == (2, 1 + frames // 16 * 8, 128)
    assert torch.max(torch.abs(got - want)).item() < 1e-5


def test_wrong_builds_differ_clearly(tiny):
    sd, heads, model = tiny
    x = fbank(2, 2048, seed=1)
    with torch.no_grad():
        got = model(x)
    assert torch.max(torch.abs(got - reference(x, sd, heads))).item() < 1e-5
    # a 512-row table interpolated to the 128 x 8 grid the input needs, instead of sliced
    grid = sd["positions"][0, :512].reshape(64, 8, -1).permute(2, 0, 1)[None]
    stretched = torch.nn.functional.interpolate(grid, size=(128, 8), mode="bilinear", align_corners=False)
    interpolated = stretched[0].permute(1, 2, 0).reshape(1, 1024, -1)
    wrong = {
        "pre-norm blocks": reference(x, sd, heads, post_norm=False),
        "final norm": reference(x, sd, heads, final_norm=True),
        "position on CLS": reference(x, sd, heads, cls_position=True),
        "interpolated table": reference(x, sd, heads, table=interpolated),
        "no pre-encoder norm": reference(x, sd, heads, pre_norm=False),
    }
    for name, out in wrong.items():
        diff = torch.max(torch.abs(got - out)).item()
        assert diff > 0.05, f"{name}: only {diff:.2e} away; the test would not catch it"


def test_block_outputs_are_the_layer_outputs(tiny):
    sd, heads, model = tiny
    x = fbank(1, 256, seed=2)
    with torch.no_grad():
        final, picked = model.forward_layers(x, layers=[1, 0])
    want_final, want_kept = reference(x, sd, heads, keep=(0, 1))
    assert len(picked) == 2
    for got, want in zip(picked, want_kept, strict=True):  # sorted by block index
        assert torch.max(torch.abs(got - want)).item() < 1e-5
    assert torch.equal(picked[1], final)


def test_input_checks(tiny):
    _, _, model = tiny
    with pytest.raises(ModelError, match="multiple of 16"):
        model(torch.zeros(1, 1, 100, 128))
    with pytest.raises(ModelError, match="128"):
        model(torch.zeros(1, 1, 96, 64))
    with pytest.raises(ModelError, match="layers"):
        model.forward_layers(torch.zeros(1, 1, 16, 128), layers=[2])


def test_legacy_table_slices_and_stops_at_its_end():
    sd, heads = make_weights(rows=512)
    model = EATEncoder.from_state_dict(sd, EATConfig.from_state_dict(sd, num_heads=heads))
    assert model.config.max_frames == 1024
    x = fbank(1, 1024)
    with torch.no_grad():
        assert torch.max(torch.abs(model(x) - reference(x, sd, heads))).item() < 1e-5
    with pytest.raises(ModelError, match="exceeds the position table"):
        model(fbank(1, 1040))


def test_truncate_keeps_first_blocks_and_rows(tiny):
    sd, heads, _ = tiny
    model = EATEncoder.from_state_dict(sd, EATConfig.from_state_dict(sd, num_heads=heads))
    model.truncate(depth=1, max_frames=512)
    assert model.config.depth == 1 and model.config.max_positions == 256 and model.config.max_frames == 512
    x = fbank(1, 512)
    one_block = {k: v for k, v in sd.items() if not k.startswith("blocks.1.")}
    with torch.no_grad():
        assert torch.max(torch.abs(model(x) - reference(x, one_block, heads))).item() < 1e-5
    with pytest.raises(ModelError):
        model(fbank(1, 528))
    with pytest.raises(ModelError, match="max_frames"):
        model.truncate(max_frames=1000)


def _meta_state(size: str) -> dict:
    spec = SIZES[size]
    config = EATConfig(spec.embed_dim, spec.depth, spec.num_heads, spec.mlp_dim, 6144)
    return {k: torch.empty(shape, device="meta") for k, shape in expected_shapes(config).items()}


@pytest.mark.parametrize(
    ("size", "dims"),
    [("base", (768, 12, 12, 3072, "base")), ("large", (1024, 24, 16, 4096, "large"))],
)
def test_config_inferred_from_real_shapes(size, dims):
    config = EATConfig.from_state_dict(_meta_state(size))
    assert (config.embed_dim, config.depth, config.num_heads, config.mlp_dim, config.size_name) == dims
    assert config.max_positions == 6144 and config.max_frames == 12288


def test_parameter_count_of_base_matches_spec():
    state = _meta_state("base")
    trainable = sum(t.numel() for k, t in state.items() if k != "positions")
    assert trainable == 85_254_144
    assert state["positions"].numel() == 4_718_592


def test_config_rejects_inconsistent_heads():
    with pytest.raises(ModelError):
        EATConfig(embed_dim=100, depth=1, num_heads=3, mlp_dim=400, max_positions=512)
