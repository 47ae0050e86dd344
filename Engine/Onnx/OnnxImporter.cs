using Onnx;
using Tp7.Engine.Graph;
using Tp7.Engine.IO;
using G = Tp7.Engine.Graph;

namespace Tp7.Engine.Onnx;

/// <summary>A network read from ONNX: the graph, its parameter values by name, and what the file said.</summary>
/// <param name="InitializerValues">Values in the file's initializers (before BatchNormalization folding; constants included).</param>
public sealed record ImportedModel(G.Graph Graph, IReadOnlyDictionary<string, float[]> Weights, string Source, int Opset, string Producer,
    IReadOnlyList<string> Notes, long InitializerValues)
{
    public long ParameterCount => Graph.Parameters.Sum(p => p.Shape.Elements);
}

/// <summary>
/// ONNX → our graph. Each ONNX node becomes one of our ops (or none: Constant, BatchNormalization folded into the
/// convolution before it, Identity/Dropout as views); every float initializer a node reads becomes a parameter;
/// shape-like inputs (Reshape's shape, Split's sizes, Clip's bounds) must be constants and become attributes. The
/// graph input's first dimension is the batch even where the file fixes it at 1. Shapes are inferred node by node
/// at batch 1 with the ops' own checks, so a bad file fails here, naming the node, before any weights reach a device.
/// </summary>
public static class OnnxImporter
{
    /// <summary>ONNX op types this importer maps (opsets 7 to 21, which <see cref="OnnxModel"/> checks).</summary>
    public static readonly IReadOnlySet<string> SupportedOps = new HashSet<string>(StringComparer.Ordinal)
    {
        "Conv", "BatchNormalization", "Relu", "Clip", "LeakyRelu", "MaxPool", "AveragePool", "GlobalAveragePool",
        "Add", "Sub", "Mul", "Div", "Concat", "Split", "Flatten", "Reshape", "Transpose", "Gemm", "MatMul", "Softmax",
        "Dropout", "Identity", "Constant",
    };

    public static ImportedModel Load(string path) => Import(OnnxModel.Load(path));

    public static ImportedModel Import(OnnxModel model) => new Builder(model).Build();

    /// <summary>
    /// A preprocessing graph in front of a network: <paramref name="pre"/>'s output feeds <paramref name="main"/>'s
    /// input. Value names of the two must not collide (those of <paramref name="main"/> are prefixed if they do).
    /// </summary>
    public static ImportedModel Compose(ImportedModel pre, ImportedModel main)
    {
        var g = new G.Graph();
        foreach (var (k, v) in pre.Graph.Inputs) g.Inputs[k] = v;
        var mainInput = main.Graph.Inputs.Keys.Single();
        var preNames = new HashSet<string>(pre.Graph.Nodes.SelectMany(n => n.Outputs).Concat(pre.Graph.Parameters.Select(p => p.Name)).Concat(pre.Graph.Inputs.Keys));
        string Rename(string v) => v == mainInput ? pre.Graph.Output : preNames.Contains(v) ? "main/" + v : v;
        g.Nodes.AddRange(pre.Graph.Nodes);
        g.Nodes.AddRange(main.Graph.Nodes.Select(n => n with { Inputs = n.Inputs.Select(Rename).ToArray(), Outputs = n.Outputs.Select(Rename).ToArray() }));
        g.Parameters.AddRange(pre.Graph.Parameters);
        g.Parameters.AddRange(main.Graph.Parameters.Select(p => (Rename(p.Name), p.Shape)));
        g.Aliases.AddRange(pre.Graph.Aliases);
        g.Aliases.AddRange(main.Graph.Aliases.Select(a => (a.Alias, Rename(a.Value))));
        g.Output = Rename(main.Graph.Output);
        var weights = new Dictionary<string, float[]>(pre.Weights);
        foreach (var (k, v) in main.Weights) weights[Rename(k)] = v;
        return new ImportedModel(g, weights, $"{pre.Source} + {main.Source}", Math.Max(pre.Opset, main.Opset), main.Producer,
            pre.Notes.Concat(main.Notes).ToList(), pre.InitializerValues + main.InitializerValues);
    }

    sealed class Builder(OnnxModel m)
    {
        readonly G.Graph g = new();
        readonly Dictionary<string, float[]> weights = new(StringComparer.Ordinal);
        readonly Dictionary<string, Shape> shapes = new(StringComparer.Ordinal);
        readonly Dictionary<string, OnnxTensor> constants = new(StringComparer.Ordinal);
        /// <summary>Value renames: an input of a node that became a view or was folded reads its source.</summary>
        readonly Dictionary<string, string> alias = new(StringComparer.Ordinal);
        readonly List<string> notes = [];
        /// <summary>Values a folded BatchNormalization removed (their name now reads the normalised value).</summary>
        readonly HashSet<string> folded = new(StringComparer.Ordinal);
        readonly Dictionary<string, int> uses = new(StringComparer.Ordinal);
        NodeProto node = null!;

        string Where => $"node '{NodeName(node)}' ({node.OpType})";
        static string NodeName(NodeProto n) => string.IsNullOrEmpty(n.Name) ? (n.Output.Count > 0 ? n.Output[0] : "?") : n.Name;
        Exception Fail(string what) => new OnnxFormatException(m.Path, Where, what);

        public ImportedModel Build()
        {
            CheckSupported();
            if (m.Inputs.Count != 1)
                throw new OnnxFormatException(m.Path, $"the graph has {m.Inputs.Count} inputs ({string.Join(", ", m.Inputs.Select(i => i.Name))}); one image input is supported");
            var input = m.Inputs[0];
            if (input.Dims.Length < 2)
                throw new OnnxFormatException(m.Path, $"input '{input.Name}' has rank {input.Dims.Length}; an image model takes (batch, channels, ...)");
            var dims = input.Dims.Select((d, i) => i == 0 ? 1 : d is long v && v > 0 && v <= int.MaxValue ? (int)v
                : throw new OnnxFormatException(m.Path, $"input '{input.Name}' dimension {i} is {(d?.ToString() ?? "symbolic")}; only the batch (first) dimension may be free")).ToArray();
            g.Inputs[input.Name] = new Shape(dims);
            shapes[input.Name] = new Shape(dims);
            foreach (var (name, t) in m.Initializers) constants[name] = t;
            foreach (var n in m.Nodes)
                foreach (var i in n.Input)
                    if (i.Length > 0) uses[i] = uses.GetValueOrDefault(i) + 1;
            foreach (var o in m.Outputs) uses[o.Name] = uses.GetValueOrDefault(o.Name) + 1;

            foreach (var n in m.Nodes)
            {
                node = n;
                Map();
            }

            if (m.Outputs.Count == 0) throw new OnnxFormatException(m.Path, $"the graph has no output");
            string output = Source(m.Outputs[0].Name);
            if (!shapes.ContainsKey(output) || g.IsParameter(output) || constants.ContainsKey(output))
                throw new OnnxFormatException(m.Path, $"output '{m.Outputs[0].Name}' is not computed from the input");
            g.Output = output;
            foreach (var o in m.Outputs)
            {
                var v = Source(o.Name);
                if (v != o.Name && shapes.ContainsKey(v)) g.Aliases.Add((o.Name, v));
            }
            foreach (var (k, v) in alias)
                if (!folded.Contains(k) && shapes.ContainsKey(Source(v)) && !g.Aliases.Any(a => a.Alias == k) && !g.IsParameter(Source(v)))
                    g.Aliases.Add((k, Source(v)));
            // Parameters in order of first use; an initializer no node reads is not loaded.
            return new ImportedModel(g, weights, m.Path, m.Opset, m.ProducerName, notes, m.Initializers.Values.Sum(t => t.Elements));
        }

        void CheckSupported()
        {
            var bad = new List<string>();
            foreach (var n in m.Nodes)
            {
                bool defaultDomain = n.Domain is "" or "ai.onnx";
                if (!defaultDomain || !SupportedOps.Contains(n.OpType))
                    bad.Add($"{NodeName(n)} ({(defaultDomain ? "" : n.Domain + ".")}{n.OpType}, opset {m.Opset})");
            }
            if (bad.Count > 0)
                throw new OnnxFormatException(m.Path, $"{bad.Count} unsupported node{(bad.Count > 1 ? "s" : "")}: {string.Join("; ", bad)}");
        }

        string Source(string v)
        {
            while (alias.TryGetValue(v, out var s)) v = s;
            return v;
        }

        string In(int i) => i < node.Input.Count ? node.Input[i] : "";
        bool Has(int i) => In(i).Length > 0;

        /// <summary>An activation input (computed from the graph input).</summary>
        string Activation(int i)
        {
            if (!Has(i)) throw Fail($"input {i} is missing");
            var v = Source(In(i));
            if (!shapes.ContainsKey(v) || g.IsParameter(v))
                throw Fail(constants.ContainsKey(v) || g.IsParameter(v) ? $"input '{In(i)}' must be computed from the graph input, not a constant"
                    : $"input '{In(i)}' is produced by no earlier node, initializer or graph input");
            return v;
        }

        /// <summary>A data input: an activation, or a float constant made a parameter.</summary>
        string Data(int i)
        {
            if (!Has(i)) throw Fail($"input {i} is missing");
            var v = Source(In(i));
            if (shapes.ContainsKey(v)) return v;
            if (constants.TryGetValue(v, out var t)) return Parameter(v, t.Dims, WeightValues(t));
            throw Fail($"input '{In(i)}' is produced by no earlier node, initializer or graph input");
        }

        OnnxTensor Constant(int i, string what)
        {
            var v = Source(In(i));
            return constants.TryGetValue(v, out var t) ? t : throw Fail($"{what} (input '{In(i)}') must be a constant or an initializer");
        }

        float[] ConstFloats(int i, string what) => Constant(i, what).ToFloats();

        /// <summary>A constant that becomes (part of) a weight: its values, refused when one is NaN or Inf (Clip's
        /// bounds, which may be infinite, are read with <see cref="ConstFloats"/>).</summary>
        float[] WeightValues(OnnxTensor t)
        {
            var values = t.ToFloats();
            if (FiniteCheck.Problem(values, t.Dims) is { } why) throw new OnnxFormatException(m.Path, $"tensor {OnnxFormatException.Quote(t.Name)}", why);
            return values;
        }

        float[] ConstWeights(int i, string what) => WeightValues(Constant(i, what));

        string Parameter(string name, long[] dims, float[] values)
        {
            if (g.IsParameter(name)) return name;
            if (dims.Any(d => d < 0 || d > int.MaxValue)) throw Fail($"initializer '{name}' has dimensions [{string.Join(", ", dims)}]");
            var shape = new Shape(dims.Select(d => (int)d).ToArray());
            if (shape.Elements != values.Length) throw Fail($"initializer '{name}' has {values.Length} values for shape {shape}");
            g.Parameters.Add((name, shape));
            weights[name] = values;
            shapes[name] = shape;
            return name;
        }

        string NewParameter(string name, Shape shape, float[] values)
        {
            string unique = name;
            for (int k = 2; shapes.ContainsKey(unique) || constants.ContainsKey(unique); k++) unique = $"{name}_{k}";
            return Parameter(unique, shape.Dims.Select(d => (long)d).ToArray(), values);
        }

        void Emit(string op, string[] inputs, string[] outputs, Attributes attrs)
        {
            var n = new Node(NodeName(node), op, inputs, outputs, attrs);
            Shape[] outShapes;
            try { outShapes = OpRegistry.Get(op).InferShapes(n, inputs.Select(i => shapes[i]).ToList()); }
            catch (ArgumentException e)
            {
                // The op's own message starts with the node; the exception names it once.
                string own = $"{n.Name} ({op}): ";
                throw Fail(e.Message.StartsWith(own, StringComparison.Ordinal) ? e.Message[own.Length..] : e.Message);
            }
            for (int k = 0; k < outputs.Length; k++)
            {
                if (shapes.ContainsKey(outputs[k])) throw Fail($"value '{outputs[k]}' is written twice");
                shapes[outputs[k]] = outShapes[k];
            }
            g.Nodes.Add(n);
        }

        void Emit(string op, string[] inputs, Attributes? attrs = null) => Emit(op, inputs, [node.Output[0]], attrs ?? new Attributes());

        int Rank(string v) => shapes[v].Rank;
        int Axis(long axis, int rank, string what)
        {
            long a = axis < 0 ? axis + rank : axis;
            if (a < 0 || a >= rank) throw Fail($"{what} {axis} is outside a rank-{rank} value");
            return (int)a;
        }

        long Int(string name, long fallback) => OnnxAttributes.Int(node, name, fallback);
        float Float(string name, float fallback) => OnnxAttributes.Float(node, name, fallback);
        int[]? Ints(string name) => OnnxAttributes.Ints(node, name)?.Select(v => v is < int.MinValue or > int.MaxValue
            ? throw Fail($"attribute {name} value {v} is out of range") : (int)v).ToArray();

        void UnusedExtraOutputs(int keep)
        {
            for (int k = keep; k < node.Output.Count; k++)
                if (node.Output[k].Length > 0 && uses.GetValueOrDefault(node.Output[k]) > 0)
                    throw Fail($"output {k} ('{node.Output[k]}') is used, which only training mode computes");
        }

        void Map()
        {
            switch (node.OpType)
            {
                case "Constant": MapConstant(); break;
                case "Identity": alias[node.Output[0]] = Data(0); break;
                case "Dropout":
                    UnusedExtraOutputs(1);
                    alias[node.Output[0]] = Data(0); // inference: the identity
                    break;
                case "Conv": MapConv(); break;
                case "BatchNormalization": MapBatchNorm(); break;
                case "Relu": Emit("Relu", [Activation(0)]); break;
                case "LeakyRelu": Emit("LeakyRelu", [Activation(0)], new Attributes().Set("alpha", Float("alpha", 0.01f))); break;
                case "Clip": MapClip(); break;
                case "MaxPool": MapPool("MaxPool"); break;
                case "AveragePool": MapPool("AveragePool"); break;
                case "GlobalAveragePool": Emit("GlobalAveragePool", [Activation(0)]); break;
                case "Add" or "Sub" or "Mul" or "Div":
                    if (Int("broadcast", -1) >= 0 || OnnxAttributes.Int(node, "axis", long.MinValue) != long.MinValue)
                        throw Fail("the legacy broadcast/axis attributes (opset < 7) are not supported");
                    Emit(node.OpType, [Data(0), Data(1)]);
                    break;
                case "Concat": MapConcat(); break;
                case "Split": MapSplit(); break;
                case "Flatten": MapFlatten(); break;
                case "Reshape": MapReshape(); break;
                case "Transpose": MapTranspose(); break;
                case "Gemm": MapGemm(); break;
                case "MatMul": MapMatMul(); break;
                case "Softmax": MapSoftmax(); break;
                default: throw Fail("unsupported op");
            }
        }

        void MapConstant()
        {
            var t = OnnxAttributes.Tensor(node, "value") ?? throw Fail("a Constant needs a tensor value (sparse values are not supported)");
            constants[node.Output[0]] = t;
        }

        void MapConv()
        {
            var x = Activation(0);
            if (Rank(x) != 4) throw Fail($"only 2-D convolutions (NCHW input) are supported, got input {shapes[x]}");
            var wt = Constant(1, "the weight");
            if (wt.Dims.Length != 4) throw Fail($"weight '{In(1)}' has shape [{string.Join(", ", wt.Dims)}], expected (K, C/group, kH, kW)");
            int k = (int)wt.Dims[0];
            var w = (float[])WeightValues(wt).Clone(); // folding a BatchNormalization rescales it in place
            var b = Has(2) ? (float[])ConstWeights(2, "the bias").Clone() : new float[k];
            if (b.Length != k) throw Fail($"bias '{In(2)}' has {b.Length} values for {k} output channels");
            var kernel = Ints("kernel_shape");
            if (kernel != null && (kernel.Length != 2 || kernel[0] != wt.Dims[2] || kernel[1] != wt.Dims[3]))
                throw Fail($"kernel_shape [{string.Join(", ", kernel)}] does not match the weight [{string.Join(", ", wt.Dims)}]");
            var strides = Ints("strides") ?? [1, 1];
            var dil = Ints("dilations") ?? [1, 1];
            var pads = Pads(shapes[x], [(int)wt.Dims[2], (int)wt.Dims[3]], strides, dil);
            var attrs = new Attributes().Set("strides", strides).Set("pads", pads).Set("dilations", dil).Set("group", (int)Int("group", 1));
            string conv = NodeName(node);
            string wName = NewParameter(conv + ".weight", new Shape(wt.Dims.Select(d => (int)d).ToArray()), w);
            string bName = NewParameter(conv + ".bias", new Shape(k), b);
            Emit("Conv", [x, wName, bName], [node.Output[0]], attrs);
        }

        /// <summary>ONNX pads [top, left, bottom, right]; auto_pad SAME_* computed from the input size.</summary>
        int[] Pads(Shape x, int[] kernel, int[] strides, int[] dil)
        {
            if (strides.Length != 2 || dil.Length != 2) throw Fail("strides and dilations need 2 values for a 2-D op");
            string auto = OnnxAttributes.String(node, "auto_pad") ?? "NOTSET";
            switch (auto)
            {
                case "NOTSET" or "":
                    var p = Ints("pads") ?? [0, 0, 0, 0];
                    if (p.Length != 4 || p.Any(v => v < 0)) throw Fail($"pads [{string.Join(", ", p)}] must be 4 non-negative values");
                    return p;
                case "VALID": return [0, 0, 0, 0];
                case "SAME_UPPER" or "SAME_LOWER":
                    var pads = new int[4];
                    for (int a = 0; a < 2; a++)
                    {
                        int size = x[2 + a], outSize = (size + strides[a] - 1) / strides[a];
                        int total = Math.Max(0, (outSize - 1) * strides[a] + (kernel[a] - 1) * dil[a] + 1 - size);
                        int small = total / 2, big = total - small;
                        (pads[a], pads[a + 2]) = auto == "SAME_UPPER" ? (small, big) : (big, small);
                    }
                    return pads;
                default: throw Fail($"auto_pad '{auto}' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER");
            }
        }

        void MapBatchNorm()
        {
            UnusedExtraOutputs(1);
            if (Int("spatial", 1) != 1) throw Fail("spatial=0 (per-activation statistics) is not supported");
            if (Int("training_mode", 0) != 0) throw Fail("training_mode=1 is not supported (inference only)");
            var x = Activation(0);
            int c = shapes[x].Rank >= 2 ? shapes[x][1] : throw Fail($"needs (N, C, ...), got {shapes[x]}");
            float[] scale = ConstWeights(1, "scale"), bias = ConstWeights(2, "B"), mean = ConstWeights(3, "mean"), var = ConstWeights(4, "var");
            foreach (var (a, what) in new[] { (scale, "scale"), (bias, "B"), (mean, "mean"), (var, "var") })
                if (a.Length != c) throw Fail($"{what} has {a.Length} values for {c} channels");
            float eps = Float("epsilon", 1e-5f);
            var producer = g.Nodes.Count > 0 && g.Nodes[^1].Outputs.Contains(x) ? g.Nodes[^1] : g.Producer(x);
            if (producer is { Op: "Conv" } conv && uses.GetValueOrDefault(x) == 1 && !m.Outputs.Any(o => o.Name == x))
            {
                // Fold: w' = w * s, b' = (b - mean) * s + beta with s = gamma / sqrt(var + eps), per output channel.
                var w = weights[conv.Inputs[1]];
                var b = weights[conv.Inputs[2]];
                int per = w.Length / c;
                for (int k = 0; k < c; k++)
                {
                    double s = scale[k] / Math.Sqrt((double)var[k] + eps);
                    for (int j = 0; j < per; j++) w[k * per + j] = (float)(w[k * per + j] * s);
                    b[k] = (float)((b[k] - mean[k]) * s + bias[k]);
                }
                // The convolution now writes the normalised value under the BatchNormalization's output name.
                int at = g.Nodes.IndexOf(conv);
                var renamed = conv with { Outputs = [node.Output[0]] };
                g.Nodes[at] = renamed;
                shapes[node.Output[0]] = shapes[x];
                shapes.Remove(x);
                alias[x] = node.Output[0];
                folded.Add(x);
                return;
            }
            string n = NodeName(node);
            Emit("BatchNormalization", [x, NewParameter(n + ".scale", new Shape(c), scale), NewParameter(n + ".bias", new Shape(c), bias),
                NewParameter(n + ".mean", new Shape(c), mean), NewParameter(n + ".var", new Shape(c), var)], new Attributes().Set("eps", eps));
        }

        void MapClip()
        {
            float lo, hi;
            if (m.Opset < 11)
            {
                lo = Float("min", float.NegativeInfinity);
                hi = Float("max", float.PositiveInfinity);
            }
            else
            {
                lo = Has(1) ? Scalar(ConstFloats(1, "min"), "min") : float.NegativeInfinity;
                hi = Has(2) ? Scalar(ConstFloats(2, "max"), "max") : float.PositiveInfinity;
            }
            if (lo == 0 && float.IsPositiveInfinity(hi)) Emit("Relu", [Activation(0)]);
            else Emit("Clip", [Activation(0)], new Attributes().Set("min", lo).Set("max", hi));
        }

        float Scalar(float[] v, string what) => v.Length == 1 ? v[0] : throw Fail($"{what} must be a scalar, got {v.Length} values");

        void MapPool(string op)
        {
            UnusedExtraOutputs(1);
            var x = Activation(0);
            if (Rank(x) != 4) throw Fail($"only 2-D pooling (NCHW input) is supported, got {shapes[x]}");
            var kernel = Ints("kernel_shape") ?? throw Fail("kernel_shape is required");
            if (kernel.Length != 2) throw Fail($"kernel_shape [{string.Join(", ", kernel)}] is not 2-D");
            var strides = Ints("strides") ?? [1, 1];
            var dil = Ints("dilations") ?? [1, 1];
            if (Int("storage_order", 0) != 0) throw Fail("storage_order=1 is not supported");
            var attrs = new Attributes().Set("kernel", kernel).Set("strides", strides).Set("pads", Pads(shapes[x], kernel, strides, dil))
                .Set("ceil_mode", Int("ceil_mode", 0) != 0);
            if (op == "MaxPool") attrs.Set("dilations", dil);
            else
            {
                if (dil.Any(d => d != 1)) throw Fail("AveragePool with dilations is not supported");
                attrs.Set("count_include_pad", Int("count_include_pad", 0) != 0);
            }
            Emit(op, [x], attrs);
        }

        void MapConcat()
        {
            var inputs = Enumerable.Range(0, node.Input.Count).Where(Has).Select(Data).ToArray();
            if (inputs.Length == 0) throw Fail("no inputs");
            int axis = Axis(Int("axis", m.Opset < 4 ? 1 : long.MinValue) is var a && a == long.MinValue ? throw Fail("axis is required") : a, Rank(inputs[0]), "axis");
            if (axis == 0) throw Fail("concatenation along the batch axis is not supported");
            Emit("Concat", inputs, new Attributes().Set("axis", axis));
        }

        void MapSplit()
        {
            var x = Activation(0);
            int axis = Axis(Int("axis", 0), Rank(x), "axis");
            if (axis == 0) throw Fail("splitting along the batch axis is not supported");
            int len = shapes[x][axis], parts = node.Output.Count;
            int[] sizes;
            if (m.Opset >= 13 && Has(1)) sizes = Constant(1, "split").ToInt64s().Select(v => (int)v).ToArray();
            else if (Ints("split") is { } s) sizes = s;
            else
            {
                int each = (len + parts - 1) / parts;
                sizes = Enumerable.Range(0, parts).Select(k => Math.Min(each, len - k * each)).ToArray();
            }
            if (sizes.Length != parts) throw Fail($"split has {sizes.Length} sizes for {parts} outputs");
            Emit("Split", [x], node.Output.ToArray(), new Attributes().Set("axis", axis).Set("split", sizes));
        }

        void MapFlatten()
        {
            var x = Activation(0);
            int axis = Axis(Int("axis", 1), Rank(x) + 1, "axis");
            if (axis == 0) throw Fail("flattening the batch into the features (axis 0) is not supported");
            Emit("Flatten", [x], new Attributes().Set("axis", axis));
        }

        void MapReshape()
        {
            var x = Activation(0);
            long[] target = m.Opset < 5 ? (OnnxAttributes.Ints(node, "shape") ?? throw Fail("shape is required")) : Constant(1, "shape").ToInt64s();
            bool allowZero = Int("allowzero", 0) != 0;
            if (target.Length == 0) throw Fail("reshaping to a scalar drops the batch");
            var shape = target.Select(v => v is < -1 or > int.MaxValue ? throw Fail($"shape value {v} is invalid") : (int)v).ToArray();
            if (allowZero && shape.Contains(0)) throw Fail("allowzero=1 with a 0 in the shape is not supported");
            // The first dimension is the batch: 0 (copy), the file's fixed batch 1, or -1 with every other size given.
            if (shape[0] == 1 || shape[0] == 0) shape[0] = 0;
            else if (shape[0] == -1 && !shape.Skip(1).Contains(-1)) shape[0] = 0;
            else throw Fail($"shape [{string.Join(", ", target)}] reshapes across the batch dimension");
            Emit("Reshape", [x], new Attributes().Set("shape", shape));
        }

        void MapTranspose()
        {
            var x = Activation(0);
            var perm = Ints("perm") ?? Enumerable.Range(0, Rank(x)).Reverse().ToArray();
            if (perm.Length == 0 || perm[0] != 0) throw Fail($"perm [{string.Join(", ", perm)}] moves the batch axis");
            Emit("Transpose", [x], new Attributes().Set("perm", perm));
        }

        void MapGemm()
        {
            var a = Activation(0);
            if (Int("transA", 0) != 0) throw Fail("transA=1 moves the batch axis; it is not supported");
            if (Rank(a) != 2) throw Fail($"A must be 2-D, got {shapes[a]}");
            float alpha = Float("alpha", 1f), beta = Float("beta", 1f);
            bool transB = Int("transB", 0) != 0;
            var bt = Constant(1, "B (the weight)");
            if (bt.Dims.Length != 2) throw Fail($"B has shape [{string.Join(", ", bt.Dims)}], expected 2-D");
            int rows = (int)(transB ? bt.Dims[0] : bt.Dims[1]), cols = (int)(transB ? bt.Dims[1] : bt.Dims[0]);
            var bf = WeightValues(bt);
            // Our Linear takes W as (out, in): B when transB, else its transpose; alpha folds into W.
            var w = new float[bf.Length];
            for (int o = 0; o < rows; o++)
                for (int i = 0; i < cols; i++)
                    w[(long)o * cols + i] = alpha * (transB ? bf[(long)o * cols + i] : bf[(long)i * rows + o]);
            var bias = new float[rows];
            if (Has(2))
            {
                var c = ConstWeights(2, "C");
                if (c.Length == 1) Array.Fill(bias, beta * c[0]);
                else if (c.Length == rows) for (int o = 0; o < rows; o++) bias[o] = beta * c[o];
                else throw Fail($"C has {c.Length} values; per-sample C (shape (M, N)) is not supported, only (N) or a scalar");
            }
            string n = NodeName(node);
            Emit("Linear", [a, NewParameter(n + ".weight", new Shape(rows, cols), w), NewParameter(n + ".bias", new Shape(rows), bias)]);
        }

        void MapMatMul()
        {
            var a = Data(0);
            var bv = Source(In(1));
            if (constants.TryGetValue(bv, out var bt) && !shapes.ContainsKey(bv) && bt.Dims.Length == 2 && shapes.ContainsKey(a) && Rank(a) == 2 && !constants.ContainsKey(a))
            {
                // x (N, K) · B (K, M) is a Linear with W = Bᵀ and no bias.
                int k = (int)bt.Dims[0], mm = (int)bt.Dims[1];
                var bf = WeightValues(bt);
                var w = new float[bf.Length];
                for (int i = 0; i < k; i++)
                    for (int o = 0; o < mm; o++) w[(long)o * k + i] = bf[(long)i * mm + o];
                string n = NodeName(node);
                Emit("Linear", [a, NewParameter(n + ".weight", new Shape(mm, k), w), NewParameter(n + ".bias", new Shape(mm), new float[mm])]);
                return;
            }
            Emit("MatMul", [a, Data(1)]);
        }

        void MapSoftmax()
        {
            var x = Activation(0);
            int rank = Rank(x);
            int axis = Axis(Int("axis", m.Opset < 13 ? 1 : -1), rank, "axis");
            var attrs = new Attributes().Set("axis", axis);
            if (m.Opset < 13 && axis != rank - 1) attrs.Set("coerce2d", true);
            Emit("Softmax", [x], attrs);
        }
    }
}
