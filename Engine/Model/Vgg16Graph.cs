using Tp7.Engine.Graph;

namespace Tp7.Engine.Model;

/// <summary>
/// torchvision's VGG16 as a graph, built from its configuration table as torchvision and TorchSharp build it
/// ({64, 64, M, 128, 128, M, …}, M = max pool): values and nodes are named by torchvision's module paths
/// (features.0 … classifier.6), so parameter names are the state_dict keys, and the lab's tap names are an alias
/// table onto those values (from <see cref="Vgg16Architecture"/>, the one table of taps).
/// </summary>
public static class Vgg16Graph
{
    /// <summary>Configuration "D" of Simonyan and Zisserman (2015); 0 is a 2x2 stride-2 max pool.</summary>
    public static readonly int[] ConfigD = [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0];

    public const string Input = "input";

    /// <param name="numClasses">Rows of classifier.6: 1,000 for ImageNet, the dataset's classes for a fine-tuned head.</param>
    /// <param name="dropout">Drop probability of classifier.2 and classifier.5 in train mode (torchvision: 0.5).</param>
    public static Graph.Graph Build(int numClasses = Vgg16Architecture.NumClasses, float dropout = 0.5f)
    {
        var g = new Graph.Graph();
        g.Inputs[Input] = new Shape(1, 3, 224, 224);
        string cur = Input;
        int index = 0, inC = 3;
        void Add(string name, string op, string[] inputs, Attributes? attrs = null)
        {
            g.Nodes.Add(new Node(name, op, inputs, [name], attrs ?? new Attributes()));
            cur = name;
        }
        foreach (var v in ConfigD)
        {
            string name = $"features.{index++}";
            if (v == 0)
            {
                Add(name, "MaxPool", [cur], new Attributes().Set("kernel", new[] { 2, 2 }).Set("strides", new[] { 2, 2 }));
                continue;
            }
            g.Parameters.Add((name + ".weight", new Shape(v, inC, 3, 3)));
            g.Parameters.Add((name + ".bias", new Shape(v)));
            Add(name, "Conv", [cur, name + ".weight", name + ".bias"], new Attributes().Set("strides", new[] { 1, 1 }).Set("pads", new[] { 1, 1 }));
            Add($"features.{index++}", "Relu", [cur]);
            inC = v;
        }
        Add("avgpool", "AdaptiveAvgPool", [cur], new Attributes().Set("output", new[] { Vgg16Architecture.PooledSize, Vgg16Architecture.PooledSize }));
        Add("flatten", "Flatten", [cur]);
        int inF = inC * Vgg16Architecture.PooledSize * Vgg16Architecture.PooledSize, ci = 0;
        foreach (var outF in new[] { 4096, 4096, numClasses })
        {
            string name = $"classifier.{ci++}";
            g.Parameters.Add((name + ".weight", new Shape(outF, inF)));
            g.Parameters.Add((name + ".bias", new Shape(outF)));
            Add(name, "Linear", [cur, name + ".weight", name + ".bias"]);
            inF = outF;
            if (ci > 6) break;
            Add($"classifier.{ci++}", "Relu", [cur]);
            Add($"classifier.{ci++}", "Dropout", [cur], new Attributes().Set("p", dropout));
        }
        g.Output = cur;
        foreach (var l in Vgg16Architecture.Layers)
            if (g.Nodes.Any(n => n.Name == l.Module)) g.Aliases.Add((l.Tap, l.Module));
        return g;
    }
}
