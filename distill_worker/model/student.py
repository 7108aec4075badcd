"""The student model and its config, in one readable file.

Encoder: BERT-style (post-LayerNorm, learned positions, GELU), the same shapes as the encoder
teacher (all-MiniLM-L6-v2: hidden 384, 12 heads, FFN 1536), so that structural distillation can
copy the teacher's embeddings and first layers into it. Mean pooling over the attention mask
feeds the intent head.

Decoder: pre-LayerNorm transformer with causal self-attention (KV cache), cross-attention over
the encoder states and tied input/output embeddings, over the responder's vocabulary (SmolLM2),
so token-level KD needs no vocabulary mapping.

Reward head: scores a (context, reply) pair from the pooled encoder state and the mean decoder
state over the reply.

Shapes: B batch, S source length, T target length, P past length, H encoder hidden, D decoder
hidden, V decoder vocabulary, C intents, h heads, d head size.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bundle_runtime.decoding import Decoding, next_tokens

KV = tuple[Tensor, Tensor]  # (keys, values), each [B, h, L, d]


@dataclass(frozen=True)
class StudentConfig:
    n_intents: int
    enc_vocab_size: int = 30522
    enc_hidden: int = 384
    enc_layers: int = 3
    enc_heads: int = 12
    enc_ffn: int = 1536
    enc_max_positions: int = 512
    enc_type_vocab: int = 2
    dec_vocab_size: int = 49152
    dec_hidden: int = 256
    dec_layers: int = 3
    dec_heads: int = 4
    dec_ffn: int = 1024
    dec_max_positions: int = 256
    dec_bos_id: int = 1
    dec_eos_id: int = 2
    dec_pad_id: int = 2
    reward_hidden: int = 128
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12

    def __post_init__(self) -> None:
        if self.n_intents < 1:
            raise ValueError("n_intents must be at least 1")
        if self.enc_hidden % self.enc_heads or self.dec_hidden % self.dec_heads:
            raise ValueError("hidden sizes must be divisible by their head counts")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        for name in ("enc_layers", "dec_layers", "enc_max_positions", "dec_max_positions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown student config fields: {sorted(unknown)}")
        return cls(**data)


def _attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
    """q [B,h,T,d], k/v [B,h,L,d], bias broadcastable to [B,h,T,L] (0 or -inf-like)."""
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def _split_heads(x: Tensor, heads: int) -> Tensor:
    b, t, c = x.shape
    return x.view(b, t, heads, c // heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def padding_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """mask [B,L] (1 keep, 0 pad) -> additive bias [B,1,1,L]."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


# ------------------------------------------------------------------------------------- encoder


class EncoderLayer(nn.Module):
    """A BERT layer; parameter names follow the teacher's so its weights load directly."""

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        h = cfg.enc_hidden
        self.heads = cfg.enc_heads
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)
        self.attn_out = nn.Linear(h, h)
        self.attn_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(h, cfg.enc_ffn)
        self.ffn_out = nn.Linear(cfg.enc_ffn, h)
        self.ffn_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        q, k, v = (_split_heads(p(x), self.heads) for p in (self.query, self.key, self.value))
        attn = self.attn_out(_merge_heads(_attention(q, k, v, bias)))
        x = self.attn_norm(x + self.dropout(attn))
        ffn = self.ffn_out(F.gelu(self.ffn_in(x)))
        out: Tensor = self.ffn_norm(x + self.dropout(ffn))
        return out


class Encoder(nn.Module):
    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        h = cfg.enc_hidden
        self.word_embeddings = nn.Embedding(cfg.enc_vocab_size, h)
        self.position_embeddings = nn.Embedding(cfg.enc_max_positions, h)
        self.token_type_embeddings = nn.Embedding(cfg.enc_type_vocab, h)
        self.embed_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """input_ids, attention_mask [B,S] -> hidden [B,S,H]."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
        # BERT's order of summation, so that a copied teacher layer gives bit-identical states.
        x = (
            self.word_embeddings(input_ids)
            + self.token_type_embeddings(torch.zeros_like(input_ids))
            + self.position_embeddings(positions)
        )
        x = self.dropout(self.embed_norm(x))
        bias = padding_bias(attention_mask, x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        hidden: Tensor = x
        return hidden


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """hidden [B,L,X], mask [B,L] -> [B,X], mean over unmasked positions."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


# ------------------------------------------------------------------------------------- decoder


class DecoderLayer(nn.Module):
    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        d = cfg.dec_hidden
        self.heads = cfg.dec_heads
        self.self_norm = nn.LayerNorm(d)
        self.self_qkv = nn.Linear(d, 3 * d)
        self.self_out = nn.Linear(d, d)
        self.cross_norm = nn.LayerNorm(d)
        self.cross_q = nn.Linear(d, d)
        self.cross_kv = nn.Linear(cfg.enc_hidden, 2 * d)
        self.cross_out = nn.Linear(d, d)
        self.ffn_norm = nn.LayerNorm(d)
        self.ffn_in = nn.Linear(d, cfg.dec_ffn)
        self.ffn_out = nn.Linear(cfg.dec_ffn, d)
        self.dropout = nn.Dropout(cfg.dropout)

    def cross_keys_values(self, enc_hidden: Tensor) -> KV:
        k, v = self.cross_kv(enc_hidden).chunk(2, dim=-1)
        return _split_heads(k, self.heads), _split_heads(v, self.heads)

    def forward(
        self, x: Tensor, self_bias: Tensor, past: KV | None, cross: KV, cross_bias: Tensor
    ) -> tuple[Tensor, KV]:
        q, k, v = self.self_qkv(self.self_norm(x)).chunk(3, dim=-1)
        q, k, v = (_split_heads(t, self.heads) for t in (q, k, v))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        x = x + self.dropout(self.self_out(_merge_heads(_attention(q, k, v, self_bias))))
        cq = _split_heads(self.cross_q(self.cross_norm(x)), self.heads)
        attn = _attention(cq, cross[0], cross[1], cross_bias)
        x = x + self.dropout(self.cross_out(_merge_heads(attn)))
        x = x + self.dropout(self.ffn_out(F.gelu(self.ffn_in(self.ffn_norm(x)))))
        return x, (k, v)


def _layer(module: nn.Module) -> DecoderLayer:
    assert isinstance(module, DecoderLayer)
    return module


class Decoder(nn.Module):
    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.dec_vocab_size, cfg.dec_hidden)
        self.positions = nn.Embedding(cfg.dec_max_positions, cfg.dec_hidden)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))
        self.final_norm = nn.LayerNorm(cfg.dec_hidden)
        self.dropout = nn.Dropout(cfg.dropout)

    def cross_keys_values(self, enc_hidden: Tensor) -> list[KV]:
        return [_layer(layer).cross_keys_values(enc_hidden) for layer in self.layers]

    def forward(
        self,
        input_ids: Tensor,
        cross: list[KV],
        enc_mask: Tensor,
        past: list[KV] | None = None,
        target_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, list[KV]]:
        """input_ids [B,T] -> (logits [B,T,V], hidden [B,T,D], present self K/V per layer).

        With `past`, positions continue after the P cached ones. `target_mask` [B,P+T] marks
        real (1) vs padded (0) target positions; padded ones are never attended to.
        """
        t = input_ids.shape[1]
        p = 0 if past is None else past[0][0].shape[2]
        positions = torch.arange(p, p + t, device=input_ids.device)[None, :]
        x = self.dropout(self.embed(input_ids) + self.positions(positions))
        dtype = x.dtype
        causal = torch.ones(t, p + t, dtype=torch.bool, device=x.device).tril(diagonal=p)
        self_bias = torch.zeros(t, p + t, dtype=dtype, device=x.device).masked_fill(
            ~causal, torch.finfo(dtype).min
        )[None, None, :, :]
        if target_mask is not None:
            self_bias = self_bias + padding_bias(target_mask, dtype)
        cross_bias = padding_bias(enc_mask, dtype)
        present: list[KV] = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, self_bias, None if past is None else past[i], cross[i], cross_bias)
            present.append(kv)
        hidden = self.final_norm(x)
        logits = hidden @ self.embed.weight.T
        return logits, hidden, present


# ---------------------------------------------------------------------------------- the model


class Student(nn.Module):
    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.intent_head = nn.Sequential(
            nn.Dropout(cfg.dropout), nn.Linear(cfg.enc_hidden, cfg.n_intents)
        )
        self.decoder = Decoder(cfg)
        self.reward_head = nn.Sequential(
            nn.Linear(cfg.enc_hidden + cfg.dec_hidden, cfg.reward_hidden),
            nn.GELU(),
            nn.Linear(cfg.reward_hidden, 1),
        )
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> (hidden [B,S,H], pooled [B,H], intent_logits [B,C])."""
        hidden = self.encoder(input_ids, attention_mask)
        pooled = mean_pool(hidden, attention_mask)
        return hidden, pooled, self.intent_head(pooled)

    def reward(self, pooled: Tensor, reply_hidden: Tensor, reply_mask: Tensor) -> Tensor:
        """pooled [B,H], reply_hidden [B,T,D], reply_mask [B,T] -> reward logit [B]."""
        reply = mean_pool(reply_hidden, reply_mask)
        score: Tensor = self.reward_head(torch.cat([pooled, reply], dim=-1))
        return score.squeeze(-1)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        decoder_input_ids: Tensor | None = None,
        decoder_mask: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Teacher-forced pass. Returns hidden, pooled, intent_logits, and with decoder inputs
        also logits [B,T,V], decoder_hidden [B,T,D] and reward [B]."""
        hidden, pooled, intent_logits = self.encode(input_ids, attention_mask)
        out = {"hidden": hidden, "pooled": pooled, "intent_logits": intent_logits}
        if decoder_input_ids is not None:
            mask = decoder_mask if decoder_mask is not None else torch.ones_like(decoder_input_ids)
            cross = self.decoder.cross_keys_values(hidden)
            logits, dec_hidden, _ = self.decoder(
                decoder_input_ids, cross, attention_mask, None, mask
            )
            out["logits"] = logits
            out["decoder_hidden"] = dec_hidden
            out["reward"] = self.reward(pooled, dec_hidden, mask)
        return out

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        max_new_tokens: int = 64,
        decoding: Decoding | None = None,
    ) -> list[list[int]]:
        """Greedy decoding with the KV cache: the reference for the exported runtime. With
        `decoding`, the serving runtime's repetition control picks each token (the same
        function as `OnnxStudent`), so evaluation reads the replies customers would get."""
        hidden, _, _ = self.encode(input_ids, attention_mask)
        cross = self.decoder.cross_keys_values(hidden)
        batch = input_ids.shape[0]
        tokens = torch.full(
            (batch, 1), self.cfg.dec_bos_id, dtype=torch.long, device=input_ids.device
        )
        past: list[KV] | None = None
        out: list[list[int]] = [[] for _ in range(batch)]
        done = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        limit = min(max_new_tokens, self.cfg.dec_max_positions - 1)
        for _ in range(limit):
            logits, _, past = self.decoder(tokens, cross, attention_mask, past)
            if decoding is None or decoding.is_greedy:
                nxt = logits[:, -1, :].argmax(dim=-1)
            else:
                last = logits[:, -1, :].float().cpu().numpy()
                picked = next_tokens(last, out, self.cfg.dec_eos_id, decoding)
                nxt = torch.from_numpy(picked).to(input_ids.device)
            for i in range(batch):
                if not done[i]:
                    if int(nxt[i]) == self.cfg.dec_eos_id:
                        done[i] = True
                    else:
                        out[i].append(int(nxt[i]))
            if bool(done.all()):
                break
            tokens = nxt[:, None]
        return out

    def num_parameters(self) -> dict[str, int]:
        def count(m: nn.Module) -> int:
            return sum(p.numel() for p in m.parameters())

        return {
            "encoder": count(self.encoder),
            "intent_head": count(self.intent_head),
            "decoder": count(self.decoder),
            "reward_head": count(self.reward_head),
            "total": count(self),
        }
