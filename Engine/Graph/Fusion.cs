namespace Tp7.Engine.Graph;

/// <summary>
/// Folds epilogues into the launch before them: a ReLU whose input comes from a convolution or linear layer, is
/// read by nothing else, and is not asked for, becomes that layer's "relu" flag and disappears (the fused layer
/// writes the ReLU's output value). The pre-ReLU value then no longer exists, so a caller who wants it (the conv1_1
/// tap, a gradient check) lists it in <c>keep</c>. Backward stays exact: the fused layer keeps its output, and the
/// gradient passes where that output is positive.
/// </summary>
public static class Fusion
{
    public static Graph FuseEpilogues(Graph graph, IReadOnlySet<string> keep)
    {
        var g = graph.Clone();
        for (int i = 0; i < g.Nodes.Count; i++)
        {
            var relu = g.Nodes[i];
            if (relu.Op != "Relu") continue;
            string v = relu.Inputs[0];
            int p = g.Nodes.FindIndex(n => n.Outputs.Contains(v));
            if (p < 0) continue;
            var producer = g.Nodes[p];
            if (producer.Op is not ("Conv" or "Linear") || producer.Attributes.Flag("relu")) continue;
            if (keep.Contains(v) || v == g.Output || g.Consumers(v).Count() != 1) continue;
            g.Nodes[p] = producer with
            {
                Outputs = [relu.Outputs[0]],
                Attributes = producer.Attributes.Clone().Set("relu", true),
            };
            g.Nodes.RemoveAt(i);
            i--;
        }
        return g;
    }
}
