"""The Transformer Q-network of the decision engine -- plain torch, no Ray.

Q(s, a) for a state s = the shopper's recent history and an action a = one of K candidates:

    history  [B, L] items + [B, L] events  --self-attention (SASRec-style encoder, Kang & McAuley 2018)-->  state
    candidate [B, K, F] features + item id + "seen in history" counts  --cross-attention over the history-->
    Q[b, k] = MLP([cand_k, attended_k, state, cand_k * state])
    with cfg.prior: Q[b, k] = prior[b, k] + V(state) + (MLP(...)[b, k] - mean_k MLP(...))   (a dueling residual)

The action space is the K candidates of the request, never the catalog: item ids enter only through
a *hashed* embedding table of fixed size, so the network shape does not depend on the catalog size
(an unknown or new item still gets a bucket). Deep Q-learning after Mnih et al. 2015, with the
double-Q target of van Hasselt et al. 2016 (applied by RLlib's learner, not here).

History convention (shared with serving): most recent item LAST; pad = item -1 on the left.
Event codes: 0 view, 1 cart, 2 purchase (recdata's codes), 3 skip (shown, not clicked: the simulator
and impression logs produce it; serving histories usually have 0-2 only).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

N_EVENT_CODES = 4  # view, cart, purchase, skip
SKIP = 3
HASH_MULT = 2654435761  # Knuth's multiplicative hash: spreads dense indices over the buckets


@dataclass
class QNetworkConfig:
    """Shape of the Q-network."""

    n_features: int = 8
    """Candidate feature count (len(models.dqn.features.CANDIDATE_FEATURES) at training time)."""
    history_len: int = 16
    """L: history items the network reads (most recent last, left-padded with -1)."""
    d_model: int = 64
    """Width of every embedding and of the attention layers."""
    n_heads: int = 2
    """Attention heads."""
    n_layers: int = 2
    """Self-attention blocks over the history."""
    item_buckets: int = 8192
    """Hashed item-embedding rows; fixed, so the catalog size never sets the network shape."""
    dropout: float = 0.0
    """Dropout in the attention blocks (DQN targets are noisy enough; 0 keeps Q deterministic)."""
    candidate_ids: bool = True
    """Add the candidate's hashed item embedding to its representation. Off, a candidate is seen through its
    features, its history matches and its attention over the history only: with noisy long-term targets the
    per-item rows memorised noise (a few transitions per item) and outweighed the prior's ranking."""
    prior: bool = False
    """Residual over a myopic prior (models/dqn/prior.py): the forward pass takes cand_prior [B, K] (the
    expected immediate reward per candidate), reads it as one more candidate input, and returns
    Q = cand_prior + V(state) + A(state, candidate) - mean_k A: a dueling residual whose state value V
    carries the future reward shared by every candidate, so that the per-candidate head learns only the
    (small) differences between candidates; both last layers zero at initialisation (Q starts as the
    prior). Measured in the 8-session simulator, the residual's spread across a state's candidates was
    2-3x the prior's own with or without V while candidate ids were on (see candidate_ids): V keeps the
    shared future value (~0.5 at gamma 0.97) out of the per-candidate head; the ids were the noise."""


class QNetwork(nn.Module):
    def __init__(self, cfg: QNetworkConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.item_emb = nn.Embedding(cfg.item_buckets + 1, d)  # last row = padding
        self.event_emb = nn.Embedding(N_EVENT_CODES, d)
        self.pos_emb = nn.Embedding(cfg.history_len + 1, d)  # +1: the state token
        self.state_token = nn.Parameter(torch.zeros(1, 1, d))
        layer = nn.TransformerEncoderLayer(d, cfg.n_heads, 2 * d, cfg.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        # candidate: features + 3 history-match counts (seen, seen-and-skipped, seen-and-engaged)
        self.cand_in = nn.Sequential(nn.Linear(cfg.n_features + 3 + int(cfg.prior), d), nn.GELU(), nn.Linear(d, d))
        self.cross = nn.MultiheadAttention(d, cfg.n_heads, dropout=cfg.dropout, batch_first=True)
        self.head = nn.Sequential(nn.Linear(4 * d, 2 * d), nn.GELU(), nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 1))
        # Small embeddings at start (GPT-2 style, std 0.02): torch's default N(0, 1) rows would drown the
        # candidate features, and the features carry most of the signal early in training.
        for emb in (self.item_emb, self.event_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)
        if cfg.prior:  # the residual starts at 0: the untrained network ranks by the prior
            self.value = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))
            for last in (self.head[-1], self.value[-1]):
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    def _bucket(self, items: torch.Tensor) -> torch.Tensor:
        pad = items < 0
        b = (items.clamp(min=0) * HASH_MULT) % self.cfg.item_buckets
        return torch.where(pad, torch.full_like(b, self.cfg.item_buckets), b)

    def forward(self, hist_items: torch.Tensor, hist_events: torch.Tensor, cand_feats: torch.Tensor,
                cand_items: torch.Tensor, cand_prior: torch.Tensor | None = None) -> torch.Tensor:
        """hist_items [B, L] int64 (-1 pad), hist_events [B, L] int, cand_feats [B, K, F], cand_items [B, K],
        cand_prior [B, K] (with cfg.prior: the myopic expected reward) -> Q [B, K]."""
        if self.cfg.prior and cand_prior is None:
            raise ValueError("this Q-network is a residual over a prior: pass cand_prior [B, K] "
                             "(models.dqn.prior.ResponsePrior.expected_reward)")
        hist_items = hist_items.long()
        cand_items = cand_items.long()
        hist_events = hist_events.long().clamp(0, N_EVENT_CODES - 1)
        B, L = hist_items.shape
        pad = hist_items < 0                                                     # [B, L]
        x = self.item_emb(self._bucket(hist_items)) + self.event_emb(hist_events)  # [B, L, d]
        x = torch.cat([self.state_token.expand(B, 1, -1), x], dim=1)             # [B, 1+L, d]
        x = x + self.pos_emb.weight[: L + 1].unsqueeze(0)
        mask = torch.cat([torch.zeros(B, 1, dtype=torch.bool, device=pad.device), pad], dim=1)
        h = self.norm(self.encoder(x, src_key_padding_mask=mask))                # [B, 1+L, d]
        state = h[:, 0]                                                          # [B, d]

        # Does the candidate repeat a history item, and how did the shopper respond then?
        same = (cand_items.unsqueeze(2) == hist_items.unsqueeze(1)) & ~pad.unsqueeze(1)  # [B, K, L]
        skipped = (hist_events == SKIP).unsqueeze(1)
        counts = torch.stack([same.sum(-1), (same & skipped).sum(-1), (same & ~skipped).sum(-1)], -1).float()
        inputs = [cand_feats.float(), counts] + ([cand_prior.float().unsqueeze(-1)] if self.cfg.prior else [])
        c = self.cand_in(torch.cat(inputs, dim=-1))                              # [B, K, d]
        if self.cfg.candidate_ids:
            c = c + self.item_emb(self._bucket(cand_items))
        att, _ = self.cross(c, h, h, key_padding_mask=mask, need_weights=False)  # [B, K, d]
        s = state.unsqueeze(1).expand_as(c)
        q = self.head(torch.cat([c, att, s, c * s], dim=-1)).squeeze(-1)         # [B, K]
        if not self.cfg.prior:
            return q
        advantage = q - q.mean(dim=1, keepdim=True)
        return cand_prior.float() + self.value(state) + advantage
