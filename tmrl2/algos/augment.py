"""Image augmentation on the learner's device (DrQ's random shift)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image of the batch by up to ``pad`` pixels in each direction.

    Replicate-pad by ``pad`` then crop a random window of the original size (Kostrikov et al.
    2020, "Image Augmentation Is All You Need"). The frames of one sample share its shift.

    Args:
        images: ``(B, history, H, W)`` or ``(B, history, H, W, 3)``, any dtype (uint8 stays
            uint8: the shift only moves pixels).
        pad: largest shift in pixels.
        generator: draws the shifts (seed it for determinism), on the images' device.
    """
    if pad == 0:
        return images
    color = images.dim() == 5
    x = images.permute(0, 1, 4, 2, 3).flatten(1, 2) if color else images
    b, c, h, w = x.shape
    padded = F.pad(x.to(torch.float32), (pad, pad, pad, pad), mode="replicate")
    shifts = torch.randint(0, 2 * pad + 1, (2, b), generator=generator, device=images.device)
    rows = torch.arange(h, device=images.device)[None, :] + shifts[0][:, None]  # (B, H)
    cols = torch.arange(w, device=images.device)[None, :] + shifts[1][:, None]  # (B, W)
    index = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).reshape(b, 1, h * w)
    out = padded.reshape(b, c, -1).gather(2, index.expand(b, c, h * w)).reshape(b, c, h, w)
    out = out.to(images.dtype)
    if color:
        out = out.reshape(b, -1, 3, h, w).permute(0, 1, 3, 4, 2)
    return out
