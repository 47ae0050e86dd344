using Tp7.Engine.Devices;
using Tp7.Engine.Graph;
using NetGraph = Tp7.Engine.Graph.Graph;
using Tp7.Engine.Model;
using Tp7.Engine.Training;

namespace Tp7.Tests;

/// <summary>
/// The graph core on its own: the planner's memory (inference of a chain costs what two ping-pong buffers did;
/// training keeps exactly what backward reads), fusion, views, and a residual block with BatchNorm and a global
/// average pool (the shapes of a ResNet) run on the host and on ILGPU's CPU accelerator against a double
/// reference written out here from the ops' definitions.
/// </summary>
public sealed class GraphCoreTests
{
    [Fact]
    public void InferencePlanOfVgg16NeedsTwoOfItsLargestActivations()
    {
        var g = Vgg16Graph.Build();
        var plan = new ExecutionPlan(g, new PlanRequest(new Shape(2, 3, 224, 224), ["fc8"]));
        long largest = 2L * 64 * 224 * 224;
        Assert.Equal(2 * largest, plan.ArenaElements);
        // Fusion: every conv and fc6/fc7 carry their ReLU; no Relu node is left to run.
        Assert.DoesNotContain(plan.ForwardNodes, i => plan.Graph.Nodes[i].Op == "Relu");
        Assert.Equal(15, plan.Graph.Nodes.Count(n => n.Attributes.Flag("relu")));
    }

    [Fact]
    public void AskingForAPreReluTapKeepsThatLayerUnfused()
    {
        var plan = new ExecutionPlan(Vgg16Graph.Build(), new PlanRequest(new Shape(1, 3, 32, 32), ["conv1_1", "pool1"]));
        Assert.False(plan.Graph.Nodes.Single(n => n.Name == "features.0").Attributes.Flag("relu"));
        Assert.True(plan.Graph.Nodes.Single(n => n.Name == "features.2").Attributes.Flag("relu"));
        // Nothing after pool1 runs: conv1_1, relu1_1, conv1_2+relu, pool1.
        Assert.Equal(4, plan.ForwardNodes.Count);
    }

    [Fact]
    public void TrainingPlanKeepsWhatBackwardReadsAndNoMore()
    {
        var g = Vgg16Graph.Build();
        var all = g.Parameters.Select(p => p.Name).ToHashSet();
        var full = new ExecutionPlan(g, new PlanRequest(new Shape(8, 3, 224, 224), [], Training: true, Trainable: all));
        // Kept for backward: the input of every conv (for dW) and every ReLU output (fused masks), pools' inputs:
        // about 15.1M floats per image at 224x224, plus the gradient ping-pong of the largest activation.
        Assert.InRange(full.ArenaBytes, 8L * 4 * 15_000_000, 8L * 4 * 20_000_000);
        // Training only the classifier needs nothing of the convolutions' activations beyond pool5's output.
        var head = new ExecutionPlan(g, new PlanRequest(new Shape(8, 3, 224, 224), [], Training: true,
            Trainable: all.Where(p => p.StartsWith("classifier.", StringComparison.Ordinal)).ToHashSet()));
        Assert.True(head.ArenaBytes <= new ExecutionPlan(g, new PlanRequest(new Shape(8, 3, 224, 224), ["fc8"])).ArenaBytes + 4L * 8 * 30_000,
            $"classifier-only training arena {head.ArenaBytes >> 20} MiB");
        Assert.DoesNotContain(head.BackwardNodes, i => head.Graph.Nodes[i].Op == "Conv");
        Assert.True(full.ArenaBytes > 2 * head.ArenaBytes, $"full {full.ArenaBytes >> 20} MiB, classifier only {head.ArenaBytes >> 20} MiB");
    }

    [Fact]
    public void FlattenIsAViewOfItsInput()
    {
        var plan = new ExecutionPlan(Vgg16Graph.Build(), new PlanRequest(new Shape(1, 3, 32, 32), ["fc6"]));
        Assert.Equal(plan.OffsetOf("avgpool"), plan.OffsetOf("flatten"));
    }

    [Fact]
    public void UnknownLayerAndBadShapesAreNamed()
    {
        var g = Vgg16Graph.Build();
        var e = Assert.Throws<ArgumentException>(() => new ExecutionPlan(g, new PlanRequest(new Shape(1, 3, 32, 32), ["relu9"])));
        Assert.Contains("relu9", e.Message);
        var e2 = Assert.Throws<ArgumentException>(() => new ExecutionPlan(g, new PlanRequest(new Shape(1, 4, 32, 32), ["fc8"])));
        Assert.Contains("features.0", e2.Message);
    }

    static NetGraph ResidualBlock(int c, int classes)
    {
        var g = new NetGraph();
        g.Inputs["x"] = new Shape(1, c, 6, 5);
        g.Parameters.Add(("conv.weight", new Shape(c, c, 3, 3)));
        g.Parameters.Add(("conv.bias", new Shape(c)));
        foreach (var p in new[] { "bn.scale", "bn.bias", "bn.mean", "bn.var" }) g.Parameters.Add((p, new Shape(c)));
        g.Parameters.Add(("fc.weight", new Shape(classes, c)));
        g.Parameters.Add(("fc.bias", new Shape(classes)));
        var pads = new Attributes().Set("strides", new[] { 1, 1 }).Set("pads", new[] { 1, 1 });
        g.Nodes.Add(new Node("conv", "Conv", ["x", "conv.weight", "conv.bias"], ["conv"], pads));
        g.Nodes.Add(new Node("bn", "BatchNormalization", ["conv", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["bn"], new Attributes().Set("eps", 1e-5f)));
        g.Nodes.Add(new Node("add", "Add", ["bn", "x"], ["add"], new Attributes()));
        g.Nodes.Add(new Node("relu", "Relu", ["add"], ["relu"], new Attributes()));
        g.Nodes.Add(new Node("gap", "GlobalAveragePool", ["relu"], ["gap"], new Attributes()));
        g.Nodes.Add(new Node("flatten", "Flatten", ["gap"], ["flatten"], new Attributes()));
        g.Nodes.Add(new Node("fc", "Linear", ["flatten", "fc.weight", "fc.bias"], ["fc"], new Attributes()));
        g.Output = "fc";
        return g;
    }

    [Fact]
    public void ResidualBlockWithBatchNormRunsOnHostAndIlgpuAsItsDefinition()
    {
        const int c = 4, classes = 3, n = 2, h = 6, w = 5;
        var rng = new Random(3);
        float[] R(long len, double scale = 1, double shift = 0) => Enumerable.Range(0, (int)len).Select(_ => (float)(shift + scale * (rng.NextDouble() * 2 - 1))).ToArray();
        var values = new Dictionary<string, float[]>
        {
            ["conv.weight"] = R(c * c * 9, 0.3), ["conv.bias"] = R(c, 0.2), ["bn.scale"] = R(c, 0.5, 1), ["bn.bias"] = R(c, 0.3),
            ["bn.mean"] = R(c, 0.2), ["bn.var"] = R(c, 0.4, 1), ["fc.weight"] = R(classes * c, 0.5), ["fc.bias"] = R(classes, 0.2),
        };
        var x = R(n * c * h * w);

        // Double reference from the definitions.
        var want = new double[n * classes];
        for (int i = 0; i < n; i++)
        {
            var pooled = new double[c];
            for (int k = 0; k < c; k++)
            {
                double f = values["bn.scale"][k] / Math.Sqrt(values["bn.var"][k] + 1e-5);
                for (int oy = 0; oy < h; oy++)
                    for (int ox = 0; ox < w; ox++)
                    {
                        double acc = values["conv.bias"][k];
                        for (int ci = 0; ci < c; ci++)
                            for (int r = 0; r < 3; r++)
                                for (int q = 0; q < 3; q++)
                                {
                                    int iy = oy + r - 1, ix = ox + q - 1;
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                    acc += (double)x[((i * c + ci) * h + iy) * w + ix] * values["conv.weight"][((k * c + ci) * 3 + r) * 3 + q];
                                }
                        double bn = (acc - values["bn.mean"][k]) * f + values["bn.bias"][k];
                        pooled[k] += Math.Max(0, bn + x[((i * c + k) * h + oy) * w + ox]);
                    }
                pooled[k] /= h * w;
            }
            for (int j = 0; j < classes; j++)
            {
                double acc = values["fc.bias"][j];
                for (int k = 0; k < c; k++) acc += pooled[k] * values["fc.weight"][j * c + k];
                want[i * classes + j] = acc;
            }
        }

        foreach (var device in new ComputeDevice[] { new HostDevice(), IlgpuDevice.OpenCpuAccelerator() })
        {
            using var _ = device;
            using var net = new Network(device, ResidualBlock(c, classes));
            foreach (var (k, v) in values) net.Parameters.Write(k, v);
            var got = net.Forward(x, new Shape(n, c, h, w), ["fc"])["fc"];
            for (int i = 0; i < want.Length; i++)
                Assert.True(Math.Abs(got[i] - want[i]) <= 1e-5 * (1 + Math.Abs(want[i])), $"{device.Name}: logit {i}: {got[i]} vs {want[i]}");
        }
    }

    [Fact]
    public void TrainingThroughAnOpWithoutBackwardIsRefusedByName()
    {
        var g = ResidualBlock(2, 2);
        var e = Assert.Throws<NotSupportedException>(() => new ExecutionPlan(g,
            new PlanRequest(new Shape(1, 2, 6, 5), [], Training: true, Trainable: g.Parameters.Select(p => p.Name).ToHashSet())));
        Assert.Contains("bn: op BatchNormalization has no backward pass", e.Message);
    }

    [Fact]
    public void TrainingThroughAValueReadTwiceIsRefusedByName()
    {
        var g = new NetGraph();
        g.Inputs["x"] = new Shape(1, 2, 4, 4);
        g.Parameters.Add(("w", new Shape(2, 2, 1, 1)));
        g.Parameters.Add(("b", new Shape(2)));
        g.Parameters.Add(("fc.weight", new Shape(3, 32)));
        g.Parameters.Add(("fc.bias", new Shape(3)));
        g.Nodes.Add(new Node("conv", "Conv", ["x", "w", "b"], ["conv"], new Attributes()));
        g.Nodes.Add(new Node("relu", "Relu", ["conv"], ["relu"], new Attributes()));
        g.Nodes.Add(new Node("twice", "Add", ["relu", "relu"], ["twice"], new Attributes()));
        g.Nodes.Add(new Node("flatten", "Flatten", ["twice"], ["flatten"], new Attributes()));
        g.Nodes.Add(new Node("fc", "Linear", ["flatten", "fc.weight", "fc.bias"], ["fc"], new Attributes()));
        g.Output = "fc";
        var e = Assert.Throws<NotSupportedException>(() => new ExecutionPlan(g,
            new PlanRequest(new Shape(1, 2, 4, 4), [], Training: true, Trainable: g.Parameters.Select(p => p.Name).ToHashSet())));
        Assert.Contains("'relu' feeds several nodes", e.Message);
    }

    [Fact]
    public void ParameterStoreIsOneBlockAndTrainableSuffixOnly()
    {
        using var device = new HostDevice();
        using var store = new ParameterStore(device, Vgg16Graph.Build().Parameters);
        Assert.Equal(Vgg16Architecture.TotalParameters, store.Count);
        var classifier = store.Entries.Where(e => e.Name.StartsWith("classifier.", StringComparison.Ordinal)).Select(e => e.Name).ToList();
        store.SetTrainable(classifier);
        Assert.Equal(classifier.Sum(n => store.Info(n).Elements), store.TrainableCount);
        Assert.Null(store.Grad("features.0.weight"));
        Assert.NotNull(store.Grad("classifier.6.bias"));
        Assert.Throws<ArgumentException>(() => store.SetTrainable(["features.0.weight"]));
    }
}
