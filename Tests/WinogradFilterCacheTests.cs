using Tp7.Engine.Devices;
using Tp7.Engine.Graph;

namespace Tp7.Tests;

/// <summary>
/// Inference keeps each 3x3 layer's F(4x4) filters between passes while the network's parameters do not change: a
/// Write (or an optimiser step) must make the next pass use the new weights, and a second network with the same
/// node names must never see the first one's filters.
/// </summary>
public sealed class WinogradFilterCacheTests
{
    static Tp7.Engine.Graph.Graph OneConv()
    {
        var g = new Tp7.Engine.Graph.Graph();
        g.Inputs["x"] = new Shape(1, 64, 16, 16);
        g.Parameters.Add(("w", new Shape(64, 64, 3, 3)));
        g.Parameters.Add(("b", new Shape(64)));
        g.Nodes.Add(new Node("conv", "Conv", ["x", "w", "b"], ["y"], new Attributes().Set("strides", new[] { 1, 1 }).Set("pads", new[] { 1, 1 })));
        g.Output = "y";
        return g;
    }

    static float[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
    }

    static float[] Run(Network net, float[] x) => net.Forward(x, new Shape(2, 64, 16, 16), ["y"])["y"];

    [Fact]
    public void AWriteBetweenPassesIsSeenAndNetworksDoNotShareFilters()
    {
        using var host = new HostDevice();
        var x = Random(2 * 64 * 16 * 16, 1);
        float[] w1 = Random(64 * 64 * 9, 2), w2 = Random(64 * 64 * 9, 3), b = Random(64, 4);
        using var a = new Network(host, OneConv());
        a.Parameters.Write("w", w1);
        a.Parameters.Write("b", b);
        var first = Run(a, x);
        Assert.Equal(first, Run(a, x)); // the kept filters give the same pass

        using var other = new Network(host, OneConv());
        other.Parameters.Write("w", w2);
        other.Parameters.Write("b", b);
        var second = Run(other, x);
        Assert.NotEqual(first, second);

        a.Parameters.Write("w", w2); // now the same weights as `other`
        Assert.Equal(second, Run(a, x));
        a.Parameters.Fill("w", span => w1.CopyTo(span));
        Assert.Equal(first, Run(a, x));
    }
}
