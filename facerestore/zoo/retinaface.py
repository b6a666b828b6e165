"""Face detectors: RetinaFace (Deng et al., CVPR 2020) with 5-point landmarks, three released files.

Each entry holds the backbone, the prior-box configuration its file was trained with and the
detection defaults (`detect_size`: long side of the resized copy detection runs on).
"""
from ..face.detect import RetinaFaceNet
from ..registry import DetectorEntry, Family, WeightFile, register

_PAPER = "Deng, Guo, Zhou, Yu, Kotsia, Zafeiriou. RetinaFace: Single-stage Dense Face Localisation in the Wild. CVPR 2020"
_FACEXLIB = "https://github.com/xinntao/facexlib/releases/download/v0.1.0"
_FACEXLIB_PRIORS = ((16, 32), (64, 128), (256, 512))
_MODULE = ("module.",)  # the files were saved from DataParallel: every key starts with "module."

FAMILY = Family(
    name="retinaface",
    archs=(RetinaFaceNet,),
    runner="facerestore.face.detect:FaceDetector",
    export="facerestore.export:detector_spec",
)

register(DetectorEntry(
    name="retinaface-resnet50", family=FAMILY, arch=RetinaFaceNet, arch_config=dict(backbone="resnet50"),
    min_sizes=_FACEXLIB_PRIORS, detect_size=1280, score_threshold=0.97,
    files=(WeightFile("detection_Resnet50_Final.pth", (f"{_FACEXLIB}/detection_Resnet50_Final.pth",),
                      strip_prefixes=_MODULE),),
    task="detect",
    license="MIT (facexlib; weights from biubug6/Pytorch_Retinaface, MIT)", commercial_use=True,
    paper=_PAPER, source="https://github.com/xinntao/facexlib",
    description="RetinaFace ResNet-50, the detector GFP-GAN uses (most accurate, slowest)",
    notes="GFP-GAN's face helper keeps detections with score > 0.97; so does this entry by default.",
))
register(DetectorEntry(
    name="retinaface-mobile0.25", family=FAMILY, arch=RetinaFaceNet, arch_config=dict(backbone="mobilenet0.25"),
    min_sizes=_FACEXLIB_PRIORS, detect_size=1024, score_threshold=0.9,
    files=(WeightFile("detection_mobilenet0.25_Final.pth", (f"{_FACEXLIB}/detection_mobilenet0.25_Final.pth",),
                      strip_prefixes=_MODULE),),
    task="detect",
    license="MIT (facexlib; weights from biubug6/Pytorch_Retinaface, MIT)", commercial_use=True,
    paper=_PAPER, source="https://github.com/xinntao/facexlib",
    description="RetinaFace MobileNet-0.25 as released with facexlib (fast)",
))
register(DetectorEntry(
    name="retinaface-mobile0.25-1mb", family=FAMILY, arch=RetinaFaceNet, arch_config=dict(backbone="mobilenet0.25"),
    # variances: its centre/landmark offsets are 0.65x the usual 0.1 x prior (measured on faces with known
    # landmarks; with 0.1 the landmarks spread ~1.5x and aligned faces come out ~1.5x too small)
    min_sizes=((10, 20), (32, 64), (128, 256)), variances=(0.065, 0.2), detect_size=(320, 640, 960), min_face=40,
    score_threshold=0.95,
    files=(WeightFile("mobilenet0.25_Final.pth",
                      ("https://github.com/biubug6/Face-Detector-1MB-with-landmark/raw/master/weights/mobilenet0.25_Final.pth",),
                      sha256="ed6fa7d45a5179f03cb5ce82c73b0c6711372968e53782e88395acee88d319e1", size=1789735,
                      strip_prefixes=_MODULE),),
    task="detect",
    license="MIT (biubug6/Face-Detector-1MB-with-landmark)", commercial_use=True,
    paper=_PAPER, source="https://github.com/biubug6/Face-Detector-1MB-with-landmark",
    description="RetinaFace MobileNet-0.25 from Face-Detector-1MB-with-landmark (1.7 MB, fast)",
    notes=("Same architecture as facexlib's mobilenet0.25 but trained with prior min_sizes "
           "[[10,20],[32,64],[128,256]]; with facexlib's [[16,32],[64,128],[256,512]] its boxes come out "
           "about 2x too big. Its centre/landmark offsets are decoded with 0.065 x prior instead of 0.1 "
           "(measured on faces with known landmarks; with 0.1 aligned faces come out ~1.5x too small). "
           "It was trained on 300 px crops and finds faces of 10-256 px: detection runs "
           "on copies resized to a long side of 320, 640 and 960 px, each answering for one band of face "
           "sizes (large faces from the small copy, the small faces of group photos from the large one), "
           "and is mapped back to the input's pixels."),
))
