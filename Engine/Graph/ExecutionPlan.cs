namespace Tp7.Engine.Graph;

/// <summary>What a plan is for.</summary>
public sealed record PlanRequest(
    Shape InputShape,
    /// <summary>Values (or aliases) whose forward values the caller reads.</summary>
    IReadOnlyCollection<string> Outputs,
    /// <summary>Train mode: backward from the output's loss gradient, down to the trainable parameters.</summary>
    bool Training = false,
    /// <summary>Parameters that get gradients (training only).</summary>
    IReadOnlySet<string>? Trainable = null,
    /// <summary>Activations whose gradients the caller reads (tests; training only).</summary>
    IReadOnlyCollection<string>? GradientOutputs = null,
    /// <summary>Turns off epilogue fusion (a test of the unfused path).</summary>
    bool NoFusion = false);

/// <summary>
/// A graph made ready for one input shape: fused, shapes inferred and checked, every activation (and in training
/// every activation gradient) placed in one arena by liveness. Timeline: forward node i runs at step i, the loss at
/// step F, node i's backward at step 2F - i. A value lives from the step that writes it to the last step that reads
/// it; training extends a forward value to the backward steps that read it (a conv's input for dW, a ReLU's output
/// for its mask). Buffers are placed greedy-by-size at the lowest offset free over their lifetime (TFLite's
/// "greedy by size" arena planner), so inference of a chain needs about two of its largest activations, as
/// ping-pong buffers would.
/// </summary>
public sealed class ExecutionPlan
{
    const long Align = 16; // floats: 64-byte alignment for the SIMD host kernels

    public Graph Graph { get; }
    public int Batch { get; }
    public bool Training { get; }
    public string InputName { get; }
    public IReadOnlyDictionary<string, Shape> Shapes => shapes;
    /// <summary>Output values the caller asked for (alias resolved), by the name they asked with.</summary>
    public IReadOnlyDictionary<string, string> OutputValues { get; }
    public IReadOnlyDictionary<string, string> GradientValues { get; }
    /// <summary>Forward nodes to run (those the outputs need), in order.</summary>
    public IReadOnlyList<int> ForwardNodes { get; }
    /// <summary>Nodes whose backward runs, in backward order.</summary>
    public IReadOnlyList<int> BackwardNodes { get; }
    public long ArenaElements { get; }
    public long ArenaBytes => 4 * ArenaElements;

    readonly Dictionary<string, Shape> shapes = new(StringComparer.Ordinal);
    readonly Dictionary<string, string> root = new(StringComparer.Ordinal);      // view value -> value that owns storage
    readonly Dictionary<string, string> gradRoot = new(StringComparer.Ordinal);
    readonly Dictionary<string, long> offset = new(StringComparer.Ordinal);      // storage value -> arena offset
    readonly Dictionary<string, long> gradOffset = new(StringComparer.Ordinal);
    readonly HashSet<string> needsGrad = new(StringComparer.Ordinal);

    public bool NeedsGrad(string value) => needsGrad.Contains(value);
    public bool IsView(int node) => OpRegistry.Get(Graph.Nodes[node].Op).IsView(Graph.Nodes[node], Training);
    public long OffsetOf(string value) => offset[Root(value)];
    public long GradOffsetOf(string value) => gradOffset[GradRoot(value)];
    /// <summary>The parameter whose elements <paramref name="value"/> views (a reshape of a weight), or null.</summary>
    public string? ParameterViewOf(string value)
    {
        string r = Root(value);
        return r != value && Graph.IsParameter(r) ? r : null;
    }
    string Root(string v) => root.TryGetValue(v, out var r) ? Root(r) : v;
    string GradRoot(string v) => gradRoot.TryGetValue(v, out var r) ? GradRoot(r) : v;

    public ExecutionPlan(Graph source, PlanRequest request, long arenaLimitBytes = long.MaxValue)
    {
        Training = request.Training;
        Batch = request.InputShape[0];
        if (source.Inputs.Count != 1) throw new NotSupportedException($"graphs with {source.Inputs.Count} inputs are not supported yet");
        InputName = source.Inputs.Keys.First();

        var outputs = request.Outputs.ToDictionary(o => o, source.Resolve);
        var gradOutputs = (request.GradientOutputs ?? []).ToDictionary(o => o, source.Resolve);
        var keep = new HashSet<string>(outputs.Values.Concat(gradOutputs.Values));
        Graph = request.NoFusion ? source.Clone() : Fusion.FuseEpilogues(source, keep);
        OutputValues = outputs;
        GradientValues = gradOutputs;
        var nodes = Graph.Nodes;
        int F = nodes.Count;

        // Shapes, checked node by node.
        var inShape = source.Inputs[InputName];
        if (request.InputShape.Rank != inShape.Rank)
            throw new ArgumentException($"input '{InputName}' has shape {request.InputShape}, the network takes rank {inShape.Rank} ({inShape} at batch 1)");
        shapes[InputName] = request.InputShape;
        var fromInput = new HashSet<string>(StringComparer.Ordinal) { InputName };
        foreach (var (name, shape) in Graph.Parameters) shapes[name] = shape;
        foreach (var node in nodes)
        {
            var op = OpRegistry.Get(node.Op);
            var ins = node.Inputs.Select(v => shapes.TryGetValue(v, out var s) ? s
                : throw new ArgumentException($"{node.Name}: input '{v}' is produced by no earlier node")).ToList();
            Shape[] outs;
            try { outs = op.InferShapes(node, ins); }
            catch (ArgumentException e) when (!e.Message.StartsWith(node.Name, StringComparison.Ordinal))
            { throw new ArgumentException($"{node.Name} ({node.Op}): {e.Message}", e); }
            Require(outs.Length == node.Outputs.Length, node, $"the op makes {outs.Length} outputs, the node names {node.Outputs.Length}");
            for (int k = 0; k < outs.Length; k++) shapes[node.Outputs[k]] = outs[k];
            // Values computed from the input keep the batch first: chunked runs and per-sample results rely on it.
            if (node.Inputs.Any(fromInput.Contains))
                for (int k = 0; k < outs.Length; k++)
                {
                    fromInput.Add(node.Outputs[k]);
                    Require(outs[k].Rank >= 1 && outs[k][0] == Batch, node,
                        $"output '{node.Outputs[k]}' has shape {outs[k]}, whose first dim is not the batch {Batch} (a Reshape keeps it with 0)");
                }
        }

        // Forward nodes the requested values need (everything up to the output when training).
        var needed = new HashSet<string>(outputs.Values);
        if (Training) needed.Add(Graph.Output);
        foreach (var g in gradOutputs.Values) needed.Add(g);
        var run = new bool[F];
        for (int i = F - 1; i >= 0; i--)
            if (nodes[i].Outputs.Any(needed.Contains))
            {
                run[i] = true;
                foreach (var v in nodes[i].Inputs) needed.Add(v);
            }
        ForwardNodes = Enumerable.Range(0, F).Where(i => run[i]).ToList();
        foreach (var i in ForwardNodes)
            if (IsView(i)) root[nodes[i].Outputs[0]] = nodes[i].Inputs[0];

        // Which values carry gradients: trainable parameters and everything computed from them.
        var backward = new List<int>();
        if (Training)
        {
            foreach (var p in request.Trainable ?? new HashSet<string>()) needsGrad.Add(p);
            foreach (var g in gradOutputs.Values)
                if (g == InputName) needsGrad.Add(g);
            foreach (var i in ForwardNodes)
                if (nodes[i].Inputs.Any(needsGrad.Contains))
                    foreach (var o in nodes[i].Outputs) needsGrad.Add(o);
            if (!needsGrad.Contains(Graph.Output))
                throw new ArgumentException("nothing to train: no trainable parameter reaches the output");
            foreach (var i in ForwardNodes.AsEnumerable().Reverse())
            {
                var node = nodes[i];
                var op = OpRegistry.Get(node.Op);
                if (!node.Outputs.Any(needsGrad.Contains)) continue;
                if (!op.HasBackward) throw new NotSupportedException($"{node.Name}: op {node.Op} has no backward pass, so it cannot be trained through");
                if (op.BackwardUnsupported(node) is { } why) throw new NotSupportedException($"{node.Name}: {why}, so it cannot be trained through");
                backward.Add(i);
                foreach (var v in node.Inputs)
                    if (needsGrad.Contains(v) && !Graph.IsParameter(v) && ForwardNodes.Sum(j => nodes[j].Inputs.Count(u => u == v)) > 1)
                        throw new NotSupportedException($"{node.Name}: '{v}' feeds several nodes; summing their gradients is not supported yet");
                if (IsView(i) && Graph.IsParameter(Root(node.Inputs[0])))
                    throw new NotSupportedException($"{node.Name}: training a parameter through a {node.Op} view of it is not supported");
                if (IsView(i)) gradRoot[node.Inputs[0]] = node.Outputs[0];
            }
        }
        BackwardNodes = backward;

        // Lifetimes over storage values.
        int Bwd(int i) => 2 * F - i;
        var first = new Dictionary<string, int>(StringComparer.Ordinal);
        var last = new Dictionary<string, int>(StringComparer.Ordinal);
        void Use(string v, int t, bool grad)
        {
            string r = grad ? GradRoot(v) : Root(v);
            if (!grad && Graph.IsParameter(r)) return; // a view of a parameter lives in the parameter block
            string key = (grad ? "d:" : "") + r;
            first[key] = first.TryGetValue(key, out var f) ? Math.Min(f, t) : t;
            last[key] = last.TryGetValue(key, out var l) ? Math.Max(l, t) : t;
        }
        Use(InputName, -1, false);
        foreach (var i in ForwardNodes)
        {
            var node = nodes[i];
            var op = OpRegistry.Get(node.Op);
            foreach (var v in node.Inputs.Where(v => !Graph.IsParameter(v))) Use(v, i, false);
            foreach (var v in node.Outputs) Use(v, i, false);
            if (!Training || !backward.Contains(i)) continue;
            var inNeed = node.Inputs.Select(needsGrad.Contains).ToList();
            for (int k = 0; k < node.Inputs.Length; k++)
                if (!Graph.IsParameter(node.Inputs[k]) && op.BackwardReadsInput(node, k, inNeed)) Use(node.Inputs[k], Bwd(i), false);
            for (int k = 0; k < node.Outputs.Length; k++)
                if (op.BackwardReadsOutput(node, k)) Use(node.Outputs[k], Bwd(i), false);
        }
        if (Training)
        {
            Use(Graph.Output, F, false);          // the loss reads the logits
            Use(Graph.Output, F, true);       // and writes their gradient
            foreach (var i in backward)
            {
                var node = nodes[i];
                foreach (var v in node.Outputs) Use(v, Bwd(i), true);
                foreach (var v in node.Inputs)
                    if (needsGrad.Contains(v) && !Graph.IsParameter(v)) Use(v, Bwd(i), true);
            }
        }

        // Greedy by size: biggest first, each at the lowest offset free over its lifetime.
        var buffers = first.Keys.Select(k => (Key: k, Size: Aligned(shapes[k.StartsWith("d:") ? k[2..] : k].Elements), From: first[k], To: last[k]))
            .OrderByDescending(b => b.Size).ThenBy(b => b.From).ToList();
        var placed = new List<(long Off, long Size, int From, int To)>();
        long arena = 0;
        foreach (var b in buffers)
        {
            long at = 0;
            foreach (var p in placed.Where(p => p.From <= b.To && b.From <= p.To).OrderBy(p => p.Off))
            {
                if (at + b.Size <= p.Off) break;
                at = Math.Max(at, p.Off + p.Size);
            }
            placed.Add((at, b.Size, b.From, b.To));
            arena = Math.Max(arena, at + b.Size);
            if (b.Key.StartsWith("d:")) gradOffset[b.Key[2..]] = at;
            else offset[b.Key] = at;
        }
        ArenaElements = arena;
        if (ArenaBytes > arenaLimitBytes)
            throw new InsufficientMemoryException($"activations need {ArenaBytes >> 20} MiB at batch {Batch}, more than the {arenaLimitBytes >> 20} MiB free");
    }

    static void Require(bool ok, Node node, string message)
    {
        if (!ok) throw new ArgumentException($"{node.Name} ({node.Op}): {message}");
    }

    static long Aligned(long n) => (n + Align - 1) / Align * Align;
}
