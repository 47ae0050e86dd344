using System.Runtime.CompilerServices;
using Google.Protobuf;
using Onnx;
using OnnxType = Onnx.TensorProto.Types.DataType;

namespace Tp7.Engine.Onnx;

/// <summary>A graph input or output: its element type (a TensorProto.DataType value, 0 when the file gives none)
/// and dims, where a null entry is a symbolic or unknown dim. Dims is [] when the file gives no shape.</summary>
public sealed record OnnxValueInfo(string Name, int ElemType, long?[] Dims);

/// <summary>
/// A validated view of an .onnx file (a ModelProto, onnx.proto3) for the importer: the main graph's nodes in an
/// order where every value is produced before it is used, its initializers as <see cref="OnnxTensor"/>s, and its
/// real inputs and outputs. Every check runs in <see cref="Load"/>/<see cref="Parse"/>, before any allocation that
/// the file's numbers could make large: a file that passes can be imported without meeting a malformed tensor,
/// a dangling value or a cycle. What the reader checks is structure; which ops and attributes the engine runs is
/// the importer's question (nodes of other domains are kept, with their <see cref="NodeProto.Domain"/>).
/// </summary>
public sealed class OnnxModel
{
    /// <summary>Default-domain opsets this reader accepts (ONNX 1.2's opset 7 to ONNX 1.16's opset 21).</summary>
    public const int MinOpset = 7, MaxOpset = 21;

    /// <summary>A protobuf message cannot exceed 2 GiB, so neither can a model file; larger weights go in external data.</summary>
    public const long MaxModelBytes = int.MaxValue;

    /// <summary>How many nodes of a cycle a message lists before it cuts the list.</summary>
    private const int MaxCycleNodesShown = 6;

    public string Path { get; }
    public long IrVersion { get; }

    /// <summary>Version of the default domain ("" or "ai.onnx"), in [<see cref="MinOpset"/>, <see cref="MaxOpset"/>].</summary>
    public int Opset { get; }

    public string ProducerName { get; }

    /// <summary>The main graph's nodes, each after the producers of its inputs (the file's order when it already is).
    /// Internal because the protobuf classes are: the importer lives in this assembly.</summary>
    internal IReadOnlyList<NodeProto> Nodes { get; }

    public int NodeCount => Nodes.Count;

    public IReadOnlyDictionary<string, OnnxTensor> Initializers { get; }

    /// <summary>Graph inputs that are not initializers (older exporters list every weight as an input too).</summary>
    public IReadOnlyList<OnnxValueInfo> Inputs { get; }

    public IReadOnlyList<OnnxValueInfo> Outputs { get; }

    /// <summary>File and description of each node of a loaded model, for the messages of <see cref="OnnxAttributes"/>.</summary>
    private static readonly ConditionalWeakTable<NodeProto, NodeSource> Sources = new();

    internal sealed record NodeSource(string File, string Description, string? ExternalDirectory);

    private OnnxModel(string path, long irVersion, int opset, string producer, NodeProto[] nodes,
        Dictionary<string, OnnxTensor> initializers, OnnxValueInfo[] inputs, OnnxValueInfo[] outputs)
    {
        Path = path;
        IrVersion = irVersion;
        Opset = opset;
        ProducerName = producer;
        Nodes = nodes;
        Initializers = initializers;
        Inputs = inputs;
        Outputs = outputs;
    }

    /// <summary>Reads and validates a model; external data is looked up beside it. Any problem gives an
    /// <see cref="OnnxFormatException"/> naming <paramref name="path"/>.</summary>
    public static OnnxModel Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        ModelProto proto;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1 << 16);
            CheckLength(stream.Length, path);
            // From a seekable stream protobuf checks each length prefix against what is left of the file before it
            // allocates, and copies each raw_data once, straight from the file: the model is not held twice.
            proto = ModelProto.Parser.ParseFrom(stream);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw NotAModel(path, e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new OnnxFormatException(path, $"cannot read: {e.Message}", e);
        }
        string? directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        return FromProto(proto, path, directory);
    }

    /// <summary>Validates a model held in memory. <paramref name="nameForMessages"/> stands for the path in messages;
    /// external data is looked up in <paramref name="directoryForExternalData"/>, and refused when it is null.</summary>
    public static OnnxModel Parse(byte[] bytes, string nameForMessages, string? directoryForExternalData)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        ArgumentNullException.ThrowIfNull(nameForMessages);
        CheckLength(bytes.LongLength, nameForMessages);
        ModelProto proto;
        try
        {
            proto = ModelProto.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw NotAModel(nameForMessages, e);
        }
        return FromProto(proto, nameForMessages, directoryForExternalData);
    }

    /// <summary>The file and description ("node 'conv1' (Conv)") of a node of a loaded model, or null for a node
    /// that did not come from <see cref="Load"/> or <see cref="Parse"/>.</summary>
    internal static NodeSource? SourceOf(NodeProto node) => Sources.TryGetValue(node, out var s) ? s : null;

    private static void CheckLength(long length, string file)
    {
        if (length == 0) throw new OnnxFormatException(file, "file is empty; not an ONNX model");
        if (length > MaxModelBytes)
            throw new OnnxFormatException(file, $"file is {length} bytes, over the {MaxModelBytes}-byte limit of one protobuf message; not an ONNX model");
    }

    private static OnnxFormatException NotAModel(string file, InvalidProtocolBufferException e) =>
        new(file, $"not an ONNX model, or truncated (protobuf: {e.Message})", e);

    // ---------------------------------------------------------------- validation

    private static OnnxModel FromProto(ModelProto model, string file, string? externalDirectory)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("ONNX tensor data is little-endian; this reader needs a little-endian machine");
        var graph = model.Graph
            ?? throw new OnnxFormatException(file, "has no graph; not an ONNX model (or not a ModelProto)");
        int opset = DefaultOpset(model, file);

        var initializers = new Dictionary<string, OnnxTensor>(graph.Initializer.Count, StringComparer.Ordinal);
        foreach (var t in graph.Initializer)
        {
            if (t.Name.Length == 0)
                throw new OnnxFormatException(file, $"initializer #{initializers.Count}", "has no name");
            string subject = $"tensor {OnnxFormatException.Quote(t.Name)}";
            if (initializers.ContainsKey(t.Name))
                throw new OnnxFormatException(file, subject, "is an initializer twice");
            initializers.Add(t.Name, OnnxTensor.Create(t, t.Name, file, subject, externalDirectory));
        }
        if (graph.SparseInitializer.Count > 0)
            throw new OnnxFormatException(file, $"tensor {OnnxFormatException.Quote(graph.SparseInitializer[0].Values?.Name ?? "")}",
                "is a sparse initializer, which this reader does not support");

        // Every value has one writer: a graph input, an initializer, or one node output.
        var inputs = new List<OnnxValueInfo>();
        var graphInputs = new HashSet<string>(StringComparer.Ordinal);
        foreach (var v in graph.Input)
        {
            string subject = $"input {OnnxFormatException.Quote(v.Name)}";
            if (v.Name.Length == 0) throw new OnnxFormatException(file, $"input #{graphInputs.Count}", "has no name");
            if (!graphInputs.Add(v.Name)) throw new OnnxFormatException(file, subject, "is a graph input twice");
            if (initializers.ContainsKey(v.Name)) continue;
            var info = ValueInfo(v, file, subject);
            if (info.ElemType != (int)OnnxType.Float)
                throw new OnnxFormatException(file, subject, $"wrong dtype {OnnxDataTypes.Name(info.ElemType)}: graph inputs must be FLOAT");
            inputs.Add(info);
        }

        var nodes = graph.Node;
        var descriptions = new string[nodes.Count];
        var producer = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < nodes.Count; i++)
        {
            var n = nodes[i];
            descriptions[i] = Describe(n, i);
            if (n.OpType.Length == 0) throw new OnnxFormatException(file, descriptions[i], "has no op_type");
            foreach (string output in n.Output)
            {
                if (output.Length == 0) continue; // an optional output left out
                string value = OnnxFormatException.Quote(output);
                if (producer.TryGetValue(output, out int other))
                    throw new OnnxFormatException(file, descriptions[i],
                        other == i ? $"writes output {value} twice" : $"writes {value}, which {descriptions[other]} writes too");
                if (initializers.ContainsKey(output))
                    throw new OnnxFormatException(file, descriptions[i], $"writes {value}, which is an initializer");
                if (graphInputs.Contains(output))
                    throw new OnnxFormatException(file, descriptions[i], $"writes {value}, which is a graph input");
                producer.Add(output, i);
            }
            CheckAttributes(n, file, descriptions[i], externalDirectory);
        }
        for (int i = 0; i < nodes.Count; i++)
            foreach (string input in nodes[i].Input)
                if (input.Length > 0 && !producer.ContainsKey(input) && !initializers.ContainsKey(input) && !graphInputs.Contains(input))
                    throw new OnnxFormatException(file, descriptions[i],
                        $"input {OnnxFormatException.Quote(input)} is not produced by any node, initializer or graph input (missing initializer?)");

        int[] order = TopologicalOrder(nodes, producer, file, descriptions);
        var sorted = new NodeProto[order.Length];
        for (int k = 0; k < order.Length; k++)
        {
            int i = order[k];
            sorted[k] = nodes[i];
            Sources.AddOrUpdate(nodes[i], new NodeSource(file, descriptions[i], externalDirectory));
        }

        var outputs = new List<OnnxValueInfo>();
        var outputNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var v in graph.Output)
        {
            string subject = $"output {OnnxFormatException.Quote(v.Name)}";
            if (v.Name.Length == 0) throw new OnnxFormatException(file, $"output #{outputs.Count}", "has no name");
            if (!outputNames.Add(v.Name)) throw new OnnxFormatException(file, subject, "is a graph output twice");
            if (!producer.ContainsKey(v.Name) && !initializers.ContainsKey(v.Name) && !graphInputs.Contains(v.Name))
                throw new OnnxFormatException(file, subject, "is not produced by any node, initializer or graph input");
            outputs.Add(ValueInfo(v, file, subject));
        }
        if (outputs.Count == 0) throw new OnnxFormatException(file, "the graph has no outputs");

        return new OnnxModel(file, model.IrVersion, opset, model.ProducerName, sorted, initializers, [.. inputs], [.. outputs]);
    }

    /// <summary>The version imported for the default domain; exactly one, in range.</summary>
    private static int DefaultOpset(ModelProto model, string file)
    {
        long? version = null;
        foreach (var o in model.OpsetImport)
        {
            if (o.Domain is not ("" or "ai.onnx")) continue;
            if (version is not null && version != o.Version)
                throw new OnnxFormatException(file, "opset_import", $"imports the default domain twice, as {version} and {o.Version}");
            version = o.Version;
        }
        if (version is null)
            throw new OnnxFormatException(file, "opset_import", "imports no version of the default domain (ai.onnx)");
        if (version < MinOpset || version > MaxOpset)
            throw new OnnxFormatException(file, "opset_import", $"default-domain opset {version} is not supported (this reader takes {MinOpset}..{MaxOpset})");
        return (int)version;
    }

    private static OnnxValueInfo ValueInfo(ValueInfoProto v, string file, string subject)
    {
        if (v.Type is null || v.Type.ValueCase == TypeProto.ValueOneofCase.None) return new OnnxValueInfo(v.Name, 0, []);
        if (v.Type.ValueCase != TypeProto.ValueOneofCase.TensorType)
            throw new OnnxFormatException(file, subject, $"is a {v.Type.ValueCase}, not a tensor");
        var tensor = v.Type.TensorType;
        if (tensor.Shape is null) return new OnnxValueInfo(v.Name, tensor.ElemType, []);
        var dims = tensor.Shape.Dim;
        if (dims.Count > OnnxTensor.MaxRank)
            throw new OnnxFormatException(file, subject, $"has {dims.Count} dims, more than the {OnnxTensor.MaxRank} this reader accepts");
        var result = new long?[dims.Count];
        for (int i = 0; i < dims.Count; i++)
        {
            if (dims[i].ValueCase != TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue) continue; // symbolic or unknown
            long d = dims[i].DimValue;
            if (d < 0) throw new OnnxFormatException(file, subject, $"dim {i} is {d}, negative");
            result[i] = d;
        }
        return new OnnxValueInfo(v.Name, tensor.ElemType, result);
    }

    /// <summary>Attribute names are unique per node (onnx.proto3: "keys should be distinct"), and every tensor
    /// attribute of a type this engine reads is checked like an initializer.</summary>
    private static void CheckAttributes(NodeProto n, string file, string description, string? externalDirectory)
    {
        for (int a = 0; a < n.Attribute.Count; a++)
        {
            var attribute = n.Attribute[a];
            for (int b = 0; b < a; b++)
                if (n.Attribute[b].Name == attribute.Name)
                    throw new OnnxFormatException(file, description, $"has attribute {OnnxFormatException.Quote(attribute.Name)} twice");
            if (attribute.T is { } t)
                OnnxTensor.CreateIfSupported(t, TensorName(n, t), file, OnnxAttributes.Subject(description, attribute.Name), externalDirectory);
        }
    }

    /// <summary>A tensor attribute's name, or the node's first output when the tensor has none (Constant's usual case).</summary>
    internal static string TensorName(NodeProto n, TensorProto t) =>
        t.Name.Length > 0 ? t.Name : n.Output.Count > 0 ? n.Output[0] : n.Name;

    /// <summary>Kahn's algorithm, taking the earliest ready node in file order so a sorted file keeps its order.
    /// Nodes left over sit on a cycle or after one; the message walks back from one of them to a node on the cycle.</summary>
    private static int[] TopologicalOrder(IReadOnlyList<NodeProto> nodes, Dictionary<string, int> producer, string file, string[] descriptions)
    {
        int count = nodes.Count;
        var pending = new int[count];
        var consumers = new List<int>?[count];
        bool sorted = true;
        for (int i = 0; i < count; i++)
        {
            foreach (string input in nodes[i].Input.Distinct())
            {
                if (input.Length == 0 || !producer.TryGetValue(input, out int p)) continue;
                if (p >= i) sorted = false;
                pending[i]++;
                (consumers[p] ??= []).Add(i);
            }
        }
        var order = new int[count];
        if (sorted)
        {
            for (int i = 0; i < count; i++) order[i] = i;
            return order;
        }
        var ready = new PriorityQueue<int, int>();
        for (int i = 0; i < count; i++) if (pending[i] == 0) ready.Enqueue(i, i);
        int done = 0;
        while (ready.TryDequeue(out int i, out _))
        {
            order[done++] = i;
            if (consumers[i] is { } next)
                foreach (int c in next)
                    if (--pending[c] == 0) ready.Enqueue(c, c);
        }
        if (done == count) return order;

        // Walk from a leftover node to a leftover producer of one of its inputs until a node repeats: that node is on a cycle.
        int start = Array.FindIndex(pending, p => p > 0);
        var path = new List<int>();
        var position = new Dictionary<int, int>();
        int at = start;
        while (!position.ContainsKey(at))
        {
            position[at] = path.Count;
            path.Add(at);
            at = nodes[at].Input.Where(s => s.Length > 0 && producer.ContainsKey(s)).Select(s => producer[s]).First(p => pending[p] > 0);
        }
        var cycle = path.Skip(position[at]).Reverse().ToList(); // producer → consumer order
        string shown = string.Join(" → ", cycle.Take(MaxCycleNodesShown).Select(k => descriptions[k]))
            + (cycle.Count > MaxCycleNodesShown ? $" → … ({cycle.Count} nodes)" : "") + $" → {descriptions[cycle[0]]}";
        throw new OnnxFormatException(file, descriptions[cycle[0]], $"is on a cycle: {shown}");
    }

    /// <summary>"node 'conv1' (Conv)", or "node #3 (Relu)" for a node without a name (index &lt; 0: not known).</summary>
    internal static string Describe(NodeProto n, int index)
    {
        string op = n.OpType.Length is > 0 and <= 64 && n.OpType.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '.')
            ? n.OpType : OnnxFormatException.Quote(n.OpType);
        return n.Name.Length > 0 ? $"node {OnnxFormatException.Quote(n.Name)} ({op})" : index >= 0 ? $"node #{index} ({op})" : $"node ({op})";
    }
}
