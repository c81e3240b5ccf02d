"""The layers bench/torch_baseline.py times and its command line, without torch (so they can be
tested where torch is absent): the presets it shares with `moekit bench`, and `--shape` and
`--routing` read as moekit reads them (lib/bench/custom_shape.ts), each shape named as moekit names
it, since `moekit bench --compare` pairs the two sides' rows by preset name.
"""
import argparse
from collections import namedtuple

# How router logits become top-k experts: method, expert groups, groups kept, the weights' scale.
Routing = namedtuple('Routing', 'method groups kept scale')
LayerShape = namedtuple('LayerShape', 'experts top_k hidden inter shared routing')

SOFTMAX_TOPK = Routing('softmax_topk', 1, 1, 1.0)
PRESETS = {
    'mixtral-8x7b': LayerShape(8, 2, 4096, 14336, 0, SOFTMAX_TOPK),
    'qwen3-30b-a3b': LayerShape(128, 8, 2048, 768, 0, SOFTMAX_TOPK),
    'deepseek-v3': LayerShape(256, 8, 7168, 2048, 2048, Routing('sigmoid_group_topk', 8, 4, 2.5)),
}
# lib/vocabulary.ts's ROUTING_METHODS, in its order (test/custom_shape.test.ts checks they agree).
ROUTING_METHODS = ('softmax_topk', 'topk_softmax', 'sigmoid_group_topk')
DEFAULT_TOKENS = '1,16,128,1024,4096,16384'
SHAPE_FIELDS = ('E', 'K', 'H', 'I', 'S')

EPILOG = """The experts are SwiGLU, as under moekit's default --activation: compare custom shapes timed
without --activation. Routing: softmax_topk (renormalized) and topk_softmax as moekit's;
sigmoid_group_topk as DeepSeek-V3's (sigmoid scores plus a random correction bias choose; a
group scores the sum of its two best; only the KEPT best groups stay eligible). A shared expert
is an ungated SwiGLU, as DeepSeek-V3's."""


def integer_field(text, field, where, minimum=1):
    """`text` as an integer of at least `minimum`; an error names `where` and `field`."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or int(text) < minimum:
        wanted = 'an integer >= 0 (0: no shared expert)' if minimum == 0 else 'a positive integer'
        raise argparse.ArgumentTypeError(f'{where}: {field} must be {wanted}, got {text!r}')
    return int(text)


def parse_shape(text):
    """`E,K,H,I[,S]` -> (E, K, H, I, S), S 0 when absent. (argparse puts 'argument --shape:' before an error.)"""
    where = repr(text)
    parts = text.split(',')
    if len(parts) not in (4, 5):
        raise argparse.ArgumentTypeError(f'{where}: expected E,K,H,I[,S] (experts, top-k, hidden size, expert intermediate size, '
                                         f"and the shared expert's), got {len(parts)} field{'' if len(parts) == 1 else 's'}")
    numbers = [integer_field(part, field, where, 0 if field == 'S' else 1) for part, field in zip(parts, SHAPE_FIELDS)]
    experts, top_k = numbers[0], numbers[1]
    if top_k > experts:
        raise argparse.ArgumentTypeError(f'{where}: K ({top_k}) is larger than E ({experts})')
    return tuple(numbers + [0] * (5 - len(numbers)))


def shape_name(numbers):
    """moekit's name for a custom shape (lib/bench/custom_shape.ts shapeName): shape-E64-K6-H2048-I1408-S2816."""
    experts, top_k, hidden, inter, shared = numbers
    return f'shape-E{experts}-K{top_k}-H{hidden}-I{inter}' + (f'-S{shared}' if shared else '')


def parse_routing(text):
    """`METHOD[,GROUPS,KEPT]`: the group counts only for sigmoid_group_topk (absent: no group limit)."""
    method, *groups = [part.strip() for part in text.split(',')]
    if method not in ROUTING_METHODS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(ROUTING_METHODS)}, got {method!r}")
    if not groups:
        return Routing(method, 1, 1, 1.0)
    where = repr(text)
    if method != 'sigmoid_group_topk':
        raise argparse.ArgumentTypeError(f'{where}: only sigmoid_group_topk takes group counts (,GROUPS,KEPT)')
    if len(groups) != 2:
        raise argparse.ArgumentTypeError(f'{where}: expected two numbers after the method (sigmoid_group_topk,GROUPS,KEPT), got {len(groups)}')
    return Routing(method, integer_field(groups[0], 'GROUPS', where), integer_field(groups[1], 'KEPT', where), 1.0)


def routing_problem(numbers, routing):
    """Why the group limit cannot route this shape (None when it can)."""
    experts, top_k = numbers[0], numbers[1]
    if experts % routing.groups:
        return f'GROUPS ({routing.groups}) must divide E ({experts})'
    if routing.kept > routing.groups:
        return f'KEPT ({routing.kept}) exceeds GROUPS ({routing.groups})'
    if top_k > routing.kept * experts // routing.groups:
        return f'K ({top_k}) is larger than the {routing.kept * experts // routing.groups} experts KEPT of GROUPS leave eligible'
    return None


def parse_args(argv=None):
    """The command line; args.layers is [(name, LayerShape)]: --presets first, then each --shape."""
    parser = argparse.ArgumentParser(description='PyTorch baselines for moekit bench (bench/torch_baseline.py)', epilog=EPILOG)
    parser.add_argument('--presets', help=f"comma-separated, of {', '.join(PRESETS)} (default: all without --shape, none with it)")
    parser.add_argument('--shape', action='append', default=[], type=parse_shape, metavar='E,K,H,I[,S]',
                        help="a layer of your own shape, as moekit bench --shape reads it (repeat for several); its rows are "
                             "named as moekit's (shape-E..-K..-H..-I..[-S..])")
    parser.add_argument('--routing', type=parse_routing, default=SOFTMAX_TOPK, metavar='METHOD[,GROUPS,KEPT]',
                        help=f"with --shape: {', '.join(ROUTING_METHODS)} (default softmax_topk), as moekit bench --routing")
    parser.add_argument('--tokens', default=DEFAULT_TOKENS)
    parser.add_argument('--quantize', choices=['fp8'], help='FP8 experts on torch._scaled_grouped_mm')
    parser.add_argument('--json')
    parser.add_argument('--skip-loop-above', type=int, default=4096, help='skip hf_loop above this many tokens')
    args = parser.parse_args(argv)
    default_presets = '' if args.shape else ','.join(PRESETS)
    names = [name for name in (args.presets if args.presets is not None else default_presets).split(',') if name]
    unknown = [name for name in names if name not in PRESETS]
    if unknown:
        parser.error(f"unknown preset {unknown[0]!r} (presets: {', '.join(PRESETS)})")
    for numbers in args.shape:
        problem = routing_problem(numbers, args.routing)
        if problem:
            parser.error(f'{shape_name(numbers)} with --routing {args.routing.method},{args.routing.groups},{args.routing.kept}: {problem}')
    args.layers = [(name, PRESETS[name]) for name in names] + [(shape_name(numbers), LayerShape(*numbers, args.routing)) for numbers in args.shape]
    return args
