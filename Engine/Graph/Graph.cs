namespace Tp7.Engine.Graph;

/// <summary>Attributes of a node, ONNX-style: ints, int lists, floats and flags by name.</summary>
public sealed class Attributes
{
    readonly Dictionary<string, object> values = new(StringComparer.Ordinal);

    public Attributes Set(string name, object value) { values[name] = value; return this; }
    public bool Has(string name) => values.ContainsKey(name);
    public int Int(string name, int fallback = 0) => values.TryGetValue(name, out var v) ? Convert.ToInt32(v, System.Globalization.CultureInfo.InvariantCulture) : fallback;
    public float Float(string name, float fallback = 0f) => values.TryGetValue(name, out var v) ? Convert.ToSingle(v, System.Globalization.CultureInfo.InvariantCulture) : fallback;
    public bool Flag(string name) => values.TryGetValue(name, out var v) && v is true;
    public int[] Ints(string name, int[] fallback) => values.TryGetValue(name, out var v) ? (int[])v : fallback;
    public Attributes Clone()
    {
        var a = new Attributes();
        foreach (var (k, v) in values) a.values[k] = v;
        return a;
    }
    public override string ToString() => string.Join(", ", values.Select(kv => $"{kv.Key}={(kv.Value is int[] a ? $"[{string.Join(",", a)}]" : kv.Value)}"));
}

/// <summary>
/// One operation of a graph: the op's registry name, the values it reads (activations and parameters, by name) and
/// writes, and its attributes. A node's <see cref="Name"/> is the module path users know (torchvision's
/// "features.0", an ONNX node name).
/// </summary>
public sealed record Node(string Name, string Op, string[] Inputs, string[] Outputs, Attributes Attributes)
{
    public override string ToString() => $"{Name}: {Op}({string.Join(", ", Inputs)}) -> {string.Join(", ", Outputs)} {Attributes}";
}

/// <summary>
/// A network as data: nodes in execution order over named values. Graph inputs and parameters are values no node
/// produces; shapes carry the batch as their first dimension, which the executor replaces by the batch it plans
/// for. <see cref="Aliases"/> maps the names users ask for (conv1_1 … relu7, fc8) onto values.
/// </summary>
public sealed class Graph
{
    public List<Node> Nodes { get; } = [];
    /// <summary>Graph inputs with their shape at batch 1.</summary>
    public Dictionary<string, Shape> Inputs { get; } = new(StringComparer.Ordinal);
    /// <summary>Parameters in state_dict order (the order of the model's parameter block).</summary>
    public List<(string Name, Shape Shape)> Parameters { get; } = [];
    /// <summary>User-facing names of values (taps) to value names, in forward order.</summary>
    public List<(string Alias, string Value)> Aliases { get; } = [];
    /// <summary>The value the network ends with (logits).</summary>
    public string Output { get; set; } = "";

    public bool IsParameter(string value) => Parameters.Any(p => p.Name == value);

    /// <summary>The value an alias or a value name stands for (case-insensitive for aliases).</summary>
    public string Resolve(string nameOrAlias)
    {
        foreach (var (a, v) in Aliases)
            if (string.Equals(a, nameOrAlias, StringComparison.OrdinalIgnoreCase)) return v;
        if (Inputs.ContainsKey(nameOrAlias) || Nodes.Any(n => n.Outputs.Contains(nameOrAlias))) return nameOrAlias;
        throw new ArgumentException($"unknown layer '{nameOrAlias}'; known: {string.Join(", ", Aliases.Select(a => a.Alias))}");
    }

    /// <summary>The node that writes <paramref name="value"/>, or null for inputs and parameters.</summary>
    public Node? Producer(string value) => Nodes.FirstOrDefault(n => n.Outputs.Contains(value));

    /// <summary>Nodes that read <paramref name="value"/>.</summary>
    public IEnumerable<Node> Consumers(string value) => Nodes.Where(n => n.Inputs.Contains(value));

    public Graph Clone()
    {
        var g = new Graph { Output = Output };
        g.Nodes.AddRange(Nodes.Select(n => n with { Inputs = (string[])n.Inputs.Clone(), Outputs = (string[])n.Outputs.Clone(), Attributes = n.Attributes.Clone() }));
        foreach (var (k, v) in Inputs) g.Inputs[k] = v;
        g.Parameters.AddRange(Parameters);
        g.Aliases.AddRange(Aliases);
        return g;
    }
}
