"""TimeCLR: video-level contrastive learning (segment and interval frame selection + NT-Xent)."""
from timeclr.loss import NTXentLoss, nt_xent

__all__ = ["nt_xent", "NTXentLoss"]
__version__ = "0.1.0"
