"""The peers' method names, what each one means in the peer, and the onnxlrp method (and parameters) it maps onto.

Two peers' vocabularies (ALGORITHMS.md, PEERS.md):

* iNNvestigate's analyzer names (``innvestigate.create_analyzer(name, model)``): every name any release registered
  (1.0.0 to 2.1.2, ``innvestigate/analyzer/__init__.py``), dotted ones included (``lrp.z``, ``lrp.epsilon``,
  ``lrp.sequential_preset_a_flat``, ``deep_taylor.bounded``, ``pattern.attribution``).
* signxai's method names (``signxai.calculate_relevancemap(name, x, model)``): every public function of signxai2
  0.5.0's ``tf_signxai/methods/wrappers.py`` and ``torch_signxai/methods/wrappers.py`` (``calculate_*`` helpers and
  ``*_DISABLED_BROKEN_WRAPPER`` ones left out).

iNNvestigate's LRP analyzers map onto the signxai grammar of :mod:`onnxlrp.methods.sign` where that grammar is the
analyzer (``lrp.z`` is ``lrp_z``: iNNvestigate's z-rule with the bias, z-rule at residual Add and average pooling,
the gradient through max-pooling, the target logit as the seed); the ``_IB`` ("ignore bias") analyzers map onto the
presets with ``zero_params=("bias",)`` (without a bias, iNNvestigate's and zennit's rules coincide).

A name is refused (:class:`~onnxlrp.errors.MethodError` with the reason) when onnxlrp has no method that computes
what the peer computes; nothing is approximated silently. Differences that remain (a default the peer sets
otherwise, a normalisation) are stated in the entry's ``note`` and shown by ``onnxlrp methods --all-names``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

INNVESTIGATE = "iNNvestigate"
SIGNXAI = "signxai"

#: post-hoc factors of signxai's ``<base>_x_input`` / ``_x_sign`` / ``_x_input_x_sign`` names (sgn0(0) = +1, as
#: signxai's ``nan_to_num(x / |x|, nan=1)``)
FACTORS = {"input": "x", "sign": "sgn0(x)", "abs_input": "x * sgn0(x) = |x|"}
FACTOR_SUFFIXES = (("_x_input_x_sign", "abs_input"), ("_x_input", "input"), ("_x_sign", "sign"))


@dataclass(frozen=True)
class PeerName:
    """One peer name: ``method`` is the onnxlrp method it runs (``{param}`` placeholders are filled from the
    parameters in signxai's number notation: ``lrp_epsilon_{epsilon}`` with ``epsilon=0.1`` is ``lrp_epsilon_0_1``),
    ``params`` the values the name sets (still settable with ``--set``), ``factor`` a post-hoc factor of
    :data:`FACTORS`, ``formula`` the peer's own definition, ``note`` how onnxlrp differs where it does, ``refused``
    why the name cannot be honoured (then ``method`` is ``None``); ``registered`` names a method that only some
    builds register (the name is refused while it is absent)."""

    name: str
    peer: str
    method: str | None
    params: dict = field(default_factory=dict)
    formula: str = ""
    factor: str | None = None
    note: str = ""
    refused: str = ""
    registered: bool = True


def _i(name, method, params=None, formula="", note="", refused="", registered=True) -> PeerName:
    return PeerName(name, INNVESTIGATE, method, dict(params or {}), formula, None, note, refused, registered)


_IB = {"zero_params": ("bias",)}
_NO_DEEP_TAYLOR = ("iNNvestigate's Deep Taylor (alpha1-beta0 on kernel layers followed by a ReLU, w-square on the "
                   "others, the gradient through Add and pooling, seeded with ReLU(output)) is not an onnxlrp method; "
                   "the nearest are lrp.alpha_1_beta_0 and epsilon_gamma_box")
_PATTERN = ("PatternNet/PatternAttribution need signal patterns fitted on data ('onnxlrp patterns'); this build has "
            "no method '{method}'")
_PATTERN_NOTE = "patterns=FILE from 'onnxlrp patterns'; refused in a build without the method"

#: every iNNvestigate analyzer name
INNVESTIGATE_NAMES: tuple[PeerName, ...] = (
    _i("input", None, refused="iNNvestigate's 'input' returns the input unchanged (a baseline for comparisons, not "
       "an explanation); onnxlrp has no such method"),
    _i("random", None, refused="iNNvestigate's 'random' returns Gaussian noise (a baseline); 'onnxlrp evaluate' "
       "compares every measure with a random order instead"),
    _i("gradient", "gradient", formula="dS_c/dx"),
    _i("gradient.baseline", "gradient", formula="dS_c/dx (the framework's own gradient, for testing)"),
    _i("input_t_gradient", "input_x_gradient", formula="x * dS_c/dx"),
    _i("deconvnet", "deconvnet", formula="DeconvNet: ReLU passes max(0, R) backwards, ignoring the forward mask"),
    _i("guided_backprop", "guided_backprop",
       formula="guided backprop: ReLU passes max(0, R) where its input was positive"),
    _i("integrated_gradients", "integrated_gradients",
       formula="(x - x0) * mean_k dS_c/dx(x0 + a_k (x - x0)), a_k = linspace(0, 1, steps), steps=64, x0 = 0",
       note="onnxlrp's own method of this name: steps=50 Gauss-Legendre points by default (the same integral); "
            "iNNvestigate's equally weighted linspace(0, 1, steps) points are none of onnxlrp's integration rules"),
    _i("smoothgrad", "smoothgrad", formula="mean_k dS_c/dx(x + n_k), n_k ~ N(0, noise_scale^2), augment_by_n=64, "
       "noise_scale=1 (absolute)",
       note="onnxlrp's own method of this name: noise std = noise_level * (max(x) - min(x)) per sample (defaults "
            "noise_level=0.1, samples=20); iNNvestigate's std is absolute"),
    _i("lrp", None, refused="iNNvestigate's base 'lrp' analyzer needs rule=...; use a named analyzer (lrp.z, "
       "lrp.epsilon, lrp.alpha_1_beta_0, ...) or an onnxlrp preset with rules= overrides"),
    _i("lrp.z_baseline", "input_x_gradient", formula="BaselineLRPZ: x * dS_c/dx (LRP-0 on ReLU/max-pooling nets)"),
    _i("lrp.z", "lrp_z", formula="z-rule with bias on every kernel layer: R_i = x_i w_ij R_j / z_j, z_j = sum_i "
       "x_i w_ij + b_j"),
    _i("lrp.z_IB", "lrp0", _IB, formula="z-rule without bias on every kernel layer: z_j = sum_i x_i w_ij"),
    _i("lrp.epsilon", "lrp_epsilon_{epsilon}", {"epsilon": 1e-7},
       formula="epsilon rule with bias: z_j + epsilon * sgn0(z_j), epsilon=1e-7 (a parameter)"),
    _i("lrp.epsilon_IB", "epsilon", {"epsilon": 1e-7, **_IB},
       formula="epsilon rule without bias, epsilon=1e-7 (a parameter)"),
    _i("lrp.w_square", None, formula="w-square rule on every kernel layer",
       refused="w-square on every layer is not an onnxlrp method ('wsquare' and the 'w2lrp_*' names use it on the "
               "first layer only); build it with rules= overrides"),
    _i("lrp.flat", "flat", formula="flat rule (all weights 1, no bias) on every kernel layer"),
    _i("lrp.alpha_beta", "lrp_alpha_{alpha}_beta_{beta}", {"alpha": 1.0, "beta": 0.0},
       formula="alpha-beta with bias (positive part with b+, negative with b-), alpha - beta = 1",
       note="iNNvestigate requires alpha or beta and infers the other; here they default to 1 and 0: set both"),
    _i("lrp.alpha_2_beta_1", "lrp_alpha_2_beta_1", formula="alpha2-beta1 with bias on every kernel layer"),
    _i("lrp.alpha_2_beta_1_IB", "alpha_beta", {"alpha": 2.0, "beta": 1.0, **_IB},
       formula="alpha2-beta1 without bias on every kernel layer"),
    _i("lrp.alpha_1_beta_0", "lrp_alpha_1_beta_0", formula="alpha1-beta0 with bias on every kernel layer"),
    _i("lrp.alpha_1_beta_0_IB", "alpha_beta", {"alpha": 1.0, "beta": 0.0, **_IB},
       formula="alpha1-beta0 without bias on every kernel layer"),
    _i("lrp.z_plus", "zplus", _IB, formula="z+ = alpha1-beta0 without bias on every kernel layer"),
    _i("lrp.z_plus_fast", "zplus", _IB, formula="R_i = x_i w+_ij R_j / sum_i x_i w+_ij (assumes x >= 0), no bias",
       note="equal to z+ where a layer's input is >= 0 (every layer after a ReLU); on a signed input layer "
            "iNNvestigate's fast form uses x where z+ uses x+ and x- separately"),
    _i("lrp.sequential_preset_a", "lrp_sequential_composite_a",
       formula="epsilon=0.1 (with bias) on dense layers, alpha1-beta0 (with bias) on Conv layers"),
    _i("lrp.sequential_preset_b", "lrp_sequential_composite_b",
       formula="epsilon=0.1 (with bias) on dense layers, alpha2-beta1 (with bias) on Conv layers"),
    _i("lrp.sequential_preset_a_flat", "flatlrp_sequential_composite_a",
       formula="lrp.sequential_preset_a with the flat rule on the input layer"),
    _i("lrp.sequential_preset_b_flat", "flatlrp_sequential_composite_b",
       formula="lrp.sequential_preset_b with the flat rule on the input layer"),
    _i("lrp.sequential_preset_b_flat_until_idx", None,
       formula="lrp.sequential_preset_b_flat with flat on the first until_layer_idx kernel layers",
       refused="it counts Keras layer indices, which an ONNX graph does not have; use lrp.sequential_preset_b_flat "
               "with rules= overrides by node name"),
    _i("deep_taylor", None, refused=_NO_DEEP_TAYLOR),
    _i("deep_taylor.bounded", None, refused=_NO_DEEP_TAYLOR),
    _i("deep_lift", None, refused="DeepLIFT is not an onnxlrp method"),
    _i("deep_lift.wrapper", None, refused="DeepLIFT (the deeplift package's wrapper) is not an onnxlrp method"),
    _i("pattern.net", "pattern_net", formula="PatternNet: the signal, projected back through the layers with the "
       "fitted patterns a in place of the weights w", note=_PATTERN_NOTE, refused=_PATTERN.format(method="pattern_net"),
       registered=False),
    _i("pattern.attribution", "pattern_attribution", formula="PatternAttribution: the backward pass with the "
       "weights w * a (a the fitted pattern), times the input", note=_PATTERN_NOTE,
       refused=_PATTERN.format(method="pattern_attribution"),
       registered=False),
)

#: signxai2 0.5.0's method names (see the module docstring)
SIGNXAI_NAMES: tuple[str, ...] = tuple("""
deconvnet deconvnet_x_input deconvnet_x_input_x_sign deconvnet_x_sign deconvnet_x_sign_mu
deconvnet_x_sign_mu_0 deconvnet_x_sign_mu_0_5 deconvnet_x_sign_mu_neg_0_5 deconvnet_x_sign_mu_wrapper deeplift
deeplift_method deeplift_x_input deeplift_x_input_x_sign deeplift_x_sign flatlrp_alpha_1_beta_0
flatlrp_epsilon_0_01 flatlrp_epsilon_0_1 flatlrp_epsilon_0_1_std_x flatlrp_epsilon_0_25_std_x
flatlrp_epsilon_0_5_std_x flatlrp_epsilon_1 flatlrp_epsilon_10 flatlrp_epsilon_100 flatlrp_epsilon_20
flatlrp_sequential_composite_a flatlrp_sequential_composite_b flatlrp_z grad_cam grad_cam_MNISTCNN
grad_cam_VGG16ILSVRC grad_cam_VGG16MITPL365 grad_cam_timeseries grad_cam_x_input grad_cam_x_input_x_sign
grad_cam_x_sign gradient gradient_x_input gradient_x_input_x_sign gradient_x_sign gradient_x_sign_mu
gradient_x_sign_mu_0 gradient_x_sign_mu_0_5 gradient_x_sign_mu_neg_0_5 gradient_x_sign_mu_wrapper
guided_backprop guided_backprop_x_input guided_backprop_x_input_x_sign guided_backprop_x_sign
guided_backprop_x_sign_mu guided_backprop_x_sign_mu_0 guided_backprop_x_sign_mu_0_5
guided_backprop_x_sign_mu_neg_0_5 guided_backprop_x_sign_mu_wrapper guided_grad_cam_MNISTCNN
guided_grad_cam_VGG16ILSVRC guided_grad_cam_VGG16MITPL365 input_t_gradient integrated_gradients
integrated_gradients_x_input integrated_gradients_x_input_x_sign integrated_gradients_x_sign
lrp_alpha_1_beta_0 lrp_alpha_1_beta_0_x_input lrp_alpha_1_beta_0_x_input_x_sign lrp_alpha_1_beta_0_x_sign
lrp_alpha_2_beta_1 lrp_alpha_2_beta_1_x_input lrp_alpha_2_beta_1_x_input_x_sign lrp_alpha_2_beta_1_x_sign
lrp_epsilon_0_001 lrp_epsilon_0_01 lrp_epsilon_0_1 lrp_epsilon_0_1_std_x lrp_epsilon_0_1_x_input
lrp_epsilon_0_1_x_input_x_sign lrp_epsilon_0_1_x_sign lrp_epsilon_0_2 lrp_epsilon_0_25_std_x lrp_epsilon_0_5
lrp_epsilon_0_5_std_x lrp_epsilon_1 lrp_epsilon_10 lrp_epsilon_100 lrp_epsilon_1_std_x lrp_epsilon_20
lrp_epsilon_2_std_x lrp_epsilon_3_std_x lrp_epsilon_5 lrp_epsilon_50 lrp_epsilon_75 lrp_epsilon_wrapper
lrp_flat lrp_flat_x_input lrp_flat_x_input_x_sign lrp_flat_x_sign lrp_gamma lrp_gamma_x_input
lrp_gamma_x_input_x_sign lrp_gamma_x_sign lrp_sequential_composite_a lrp_sequential_composite_b lrp_w_square
lrp_w_square_x_input lrp_w_square_x_input_x_sign lrp_w_square_x_sign lrp_z lrp_z_plus lrp_z_plus_x_input
lrp_z_plus_x_input_x_sign lrp_z_plus_x_sign lrp_z_x_input lrp_z_x_input_x_sign lrp_z_x_sign
lrpsign_alpha_1_beta_0 lrpsign_epsilon_0_001 lrpsign_epsilon_0_01 lrpsign_epsilon_0_1
lrpsign_epsilon_0_1_std_x lrpsign_epsilon_0_2 lrpsign_epsilon_0_25_std_x lrpsign_epsilon_0_25_std_x_mu_0
lrpsign_epsilon_0_25_std_x_mu_0_5 lrpsign_epsilon_0_25_std_x_mu_neg_0_5 lrpsign_epsilon_0_5
lrpsign_epsilon_0_5_std_x lrpsign_epsilon_1 lrpsign_epsilon_10 lrpsign_epsilon_100 lrpsign_epsilon_100_mu_0
lrpsign_epsilon_100_mu_0_5 lrpsign_epsilon_100_mu_neg_0_5 lrpsign_epsilon_1_std_x lrpsign_epsilon_20
lrpsign_epsilon_2_std_x lrpsign_epsilon_3_std_x lrpsign_epsilon_5 lrpsign_epsilon_50 lrpsign_epsilon_75
lrpsign_sequential_composite_a lrpsign_sequential_composite_b lrpsign_z lrpz_alpha_1_beta_0 lrpz_epsilon_0_001
lrpz_epsilon_0_01 lrpz_epsilon_0_1 lrpz_epsilon_0_1_std_x lrpz_epsilon_0_2 lrpz_epsilon_0_25_std_x
lrpz_epsilon_0_5 lrpz_epsilon_0_5_std_x lrpz_epsilon_1 lrpz_epsilon_10 lrpz_epsilon_100 lrpz_epsilon_1_std_x
lrpz_epsilon_20 lrpz_epsilon_2_std_x lrpz_epsilon_3_std_x lrpz_epsilon_5 lrpz_epsilon_50 lrpz_epsilon_75
lrpz_sequential_composite_a lrpz_sequential_composite_b random_uniform smoothgrad smoothgrad_x_input
smoothgrad_x_input_x_sign smoothgrad_x_sign smoothgrad_x_sign_mu smoothgrad_x_sign_mu_0
smoothgrad_x_sign_mu_0_5 smoothgrad_x_sign_mu_neg_0_5 vargrad vargrad_x_input vargrad_x_input_x_sign
vargrad_x_sign w2lrp_alpha_1_beta_0 w2lrp_epsilon_0_01 w2lrp_epsilon_0_1 w2lrp_epsilon_0_1_std_x
w2lrp_epsilon_0_25_std_x w2lrp_epsilon_0_5_std_x w2lrp_epsilon_1 w2lrp_epsilon_10 w2lrp_epsilon_100
w2lrp_epsilon_20 w2lrp_sequential_composite_a w2lrp_sequential_composite_b w2lrp_z
zblrp_alpha_1_beta_0_VGG16ILSVRC zblrp_epsilon_0_001_VGG16ILSVRC zblrp_epsilon_0_01_VGG16ILSVRC
zblrp_epsilon_0_1_VGG16ILSVRC zblrp_epsilon_0_1_std_x_VGG16ILSVRC zblrp_epsilon_0_25_std_x_VGG16ILSVRC
zblrp_epsilon_0_2_VGG16ILSVRC zblrp_epsilon_0_5_VGG16ILSVRC zblrp_epsilon_0_5_std_x_VGG16ILSVRC
zblrp_epsilon_100_VGG16ILSVRC zblrp_epsilon_10_VGG16ILSVRC zblrp_epsilon_1_VGG16ILSVRC
zblrp_epsilon_20_VGG16ILSVRC zblrp_epsilon_5_VGG16ILSVRC zblrp_sequential_composite_a_VGG16ILSVRC
zblrp_sequential_composite_b_VGG16ILSVRC zblrp_z_VGG16ILSVRC
""".split())


def _s(name, method, params=None, formula="", note="", refused="") -> PeerName:
    return PeerName(name, SIGNXAI, method, dict(params or {}), formula, None, note, refused)


_SIGNXAI_SMOOTHGRAD = {"samples": 50, "noise_level": 0.2}
_GRAD_CAM_NOTE = ("signxai divides the ReLU'd map by its maximum and then resizes (cv2); onnxlrp resizes (bilinear, "
                  "half-pixel) and then min-max normalises per sample")

#: signxai names whose meaning is not one of onnxlrp's grammars (``<base>_x_...`` names derive from their base)
SIGNXAI_SPECIAL: dict[str, PeerName] = {p.name: p for p in (
    _s("input_t_gradient", "input_x_gradient", formula="x * dS_c/dx (iNNvestigate's input_t_gradient)"),
    _s("gradient_x_input", "input_x_gradient", formula="dS_c/dx * x"),
    _s("smoothgrad", "smoothgrad", _SIGNXAI_SMOOTHGRAD,
       formula="iNNvestigate SmoothGrad, augment_by_n=50, noise_scale=0.2",
       note="onnxlrp's noise std is noise_level * (max(x) - min(x)) per sample (signxai2's PyTorch convention); "
            "TensorFlow signxai's is absolute"),
    _s("integrated_gradients", "integrated_gradients", {"steps": 50},
       formula="(x - x0) * mean_k dS_c/dx(x0 + a_k (x - x0)), a_k = linspace(0, 1, 50), x0 = 0",
       note="Gauss-Legendre points (the same integral); signxai's equally weighted linspace points are none of "
            "onnxlrp's integration rules"),
    _s("grad_cam", "grad_cam", formula="ReLU(sum_k mean_ij(dS_c/dA_k) A_k) / max, resized", note=_GRAD_CAM_NOTE),
    _s("grad_cam_timeseries", "grad_cam", formula="Grad-CAM on the last Conv1D", note=_GRAD_CAM_NOTE),
    _s("grad_cam_VGG16ILSVRC", "grad_cam", {"layer": "block5_conv3"}, formula="Grad-CAM at Keras VGG16's "
       "block5_conv3", note=_GRAD_CAM_NOTE),
    _s("grad_cam_VGG16MITPL365", "grad_cam", {"layer": "relu5_3"}, formula="Grad-CAM at VGG16-Places365's relu5_3",
       note=_GRAD_CAM_NOTE),
    _s("grad_cam_MNISTCNN", "grad_cam", {"layer": "conv2d_1"}, formula="Grad-CAM at signxai's MNIST CNN's "
       "conv2d_1", note=_GRAD_CAM_NOTE),
    _s("lrp_flat", "flat", formula="iNNvestigate lrp.flat: flat rule (all weights 1, no bias) on every kernel "
       "layer"),
    _s("lrp_z_plus", "zplus", _IB, formula="iNNvestigate lrp.z_plus: alpha1-beta0 without bias on every kernel "
       "layer"),
    _s("lrp_epsilon_wrapper", "lrp_epsilon_{epsilon}", {"epsilon": 0.1},
       formula="iNNvestigate lrp.epsilon with epsilon=0.1 (a parameter)"),
    _s("gradient_x_sign_mu_wrapper", "gradient_x_sign_mu", formula="dS_c/dx * S_mu(x), mu a parameter (0)"),
    _s("guided_backprop_x_sign_mu_wrapper", "guided_backprop_x_sign_mu",
       formula="guided backprop * S_mu(x), mu a parameter (0)"),
    _s("deconvnet_x_sign_mu_wrapper", "deconvnet_x_sign_mu", formula="DeconvNet * S_mu(x), mu a parameter (0)"),
    _s("lrp_w_square", None, refused="w-square on every layer is not an onnxlrp method ('w2lrp_*' uses it on the "
       "input layer only)"),
    _s("lrp_gamma", None, refused="signxai's LRP-gamma (its iNNvestigate GammaRule, gamma=0.5, with bias) is not "
       "onnxlrp's zennit-style 'gamma' preset"),
    _s("vargrad", None, refused="VarGrad (the variance of gradients over noisy copies) is not an onnxlrp method"),
    _s("deeplift", None, refused="DeepLIFT is not an onnxlrp method"),
    _s("deeplift_method", None, refused="DeepLIFT is not an onnxlrp method"),
    _s("random_uniform", None, refused="signxai's 'random_uniform' returns uniform noise (a baseline); 'onnxlrp "
       "evaluate' compares every measure with a random order instead"),
    *(_s(f"guided_grad_cam_{net}", None, refused="Guided Grad-CAM (guided backprop through the network cut at the "
         "Grad-CAM layer, times Grad-CAM) is not an onnxlrp method")
      for net in ("MNISTCNN", "VGG16ILSVRC", "VGG16MITPL365")),
)}
