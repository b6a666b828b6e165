"""Training losses, one module per family: pixel, perceptual (VGG19 + Gram style), gan (+ R1),
identity (ArcFace), gfpgan (pyramid + facial components), gpen (feature matching), dpr (relighting)."""
from .dpr import feature_consistency_loss, gradient_l1, image_gradients, light_loss
from .gan import GAN_TYPES, GANLoss, gan_loss, r1_penalty
from .gfpgan import component_style_loss, crop_components, image_pyramid, pyramid_loss
from .gpen import feature_matching_loss
from .identity import IdentityLoss, ResNetArcFace, gray_resize
from .perceptual import VGG19_LAYERS, PerceptualLoss, VGG19Features, gram_matrix
from .pixel import PixelLoss, pixel_loss

__all__ = [
    "PixelLoss", "pixel_loss", "PerceptualLoss", "VGG19Features", "VGG19_LAYERS", "gram_matrix",
    "GANLoss", "GAN_TYPES", "gan_loss", "r1_penalty", "IdentityLoss", "ResNetArcFace", "gray_resize",
    "image_pyramid", "pyramid_loss", "crop_components", "component_style_loss", "feature_matching_loss",
    "image_gradients", "gradient_l1", "light_loss", "feature_consistency_loss",
]
