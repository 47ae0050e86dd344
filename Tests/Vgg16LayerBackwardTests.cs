using Tp7.Engine.Devices;
using Tp7.Engine.Graph;
using Tp7.Engine.IO;
using Tp7.Engine.Kernels;
using Tp7.Engine.Model;
using Tp7.Engine.Training;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// VGG16's backward at 224x224 for a batch of 2 against PyTorch (tools/make_reference.py, --grads all), one layer at
/// a time: each backward op gets PyTorch's own forward values and incoming gradient, so its output is compared with
/// PyTorch's without the ReLU kink effect (a pre-ReLU value within rounding of 0 whose sign differs between our
/// Winograd forward and PyTorch's routes one element differently, and end to end that reaches every layer below).
/// Every tap's and every parameter's gradient within 1e-4 of its max |torch|.
/// </summary>
[Collection("reference")]
public sealed class Vgg16LayerBackwardTests(ReferenceFiles refs, ITestOutputHelper output)
{
    const double Tolerance = 1e-4;

    sealed class Comparison(ITestOutputHelper output)
    {
        public readonly List<string> Failures = [];
        public (string Name, double Rel) Worst = ("", 0);

        public double Check(string name, ReadOnlySpan<float> got, ReadOnlySpan<float> want, double tolerance, bool assert = true)
        {
            Assert.Equal(want.Length, got.Length);
            double maxRef = 0, maxErr = 0;
            int at = 0;
            for (int i = 0; i < want.Length; i++)
            {
                maxRef = Math.Max(maxRef, Math.Abs(want[i]));
                double e = Math.Abs(got[i] - (double)want[i]);
                if (e > maxErr || double.IsNaN(e)) { maxErr = e; at = i; }
            }
            double rel = maxErr / Math.Max(maxRef, 1e-30);
            if (rel > Worst.Rel || double.IsNaN(rel)) Worst = (name, rel);
            output.WriteLine($"  {name,-28} {rel:E2}  (max |torch| {maxRef:G4})");
            if (assert && !(rel <= tolerance))
                Failures.Add($"{name}: {rel:E2} of max |torch| {maxRef:G4} at {at} (ours {got[at]}, torch {want[at]})");
            return rel;
        }
    }

    [Fact]
    public void EachLayersBackwardMatchesPyTorchAt224GivenPyTorchsForwardValues()
    {
        using var file = ReferenceFiles.Open(refs.Random224);
        var weights = WeightsLocator.Load(refs.Weights);
        var c = new Comparison(output);
        string prev = "input";
        float[] Tap(string name) => file.ReadFloat32(name == "input" ? "input" : "tap/" + name);
        int[] Dims(string name) => file.Info(name == "input" ? "input" : "tap/" + name).Shape.Select(d => (int)d).ToArray();
        int checkedLayers = 0;
        foreach (var layer in Vgg16Architecture.Layers)
        {
            if (layer.Kind is LayerKind.Flatten or LayerKind.Dropout) continue; // identities in eval mode
            var dy = file.ReadFloat32("grad/" + layer.Tap);
            var din = prev == "input" ? null : file.ReadFloat32("grad/" + prev);
            var d = Dims(prev);
            int n = d[0];
            switch (layer.Kind)
            {
                case LayerKind.Conv:
                {
                    var s = ConvShape.Square(n, d[1], d[2], d[3], layer.OutChannels, 3, 1, 1);
                    var w = weights[layer.WeightKey!];
                    if (din != null)
                    {
                        var dx = new float[din.Length];
                        Conv2d.BackwardDataHost(dx, dy, w, s);
                        c.Check($"{layer.Tap} dx (grad/{prev})", dx, din, Tolerance);
                    }
                    var dw = new float[w.Length];
                    var db = new float[layer.OutChannels];
                    Conv2d.BackwardWeightHost(dw, db, dy, Tap(prev), s);
                    c.Check("grad/" + layer.WeightKey, dw, file.ReadFloat32("grad/" + layer.WeightKey), Tolerance);
                    c.Check("grad/" + layer.BiasKey, db, file.ReadFloat32("grad/" + layer.BiasKey), Tolerance);
                    break;
                }
                case LayerKind.Relu:
                {
                    var dx = new float[din!.Length];
                    Activations.ReluBackwardHost(dx, dy, Tap(layer.Tap));
                    c.Check($"{layer.Tap} dx (grad/{prev})", dx, din, Tolerance);
                    break;
                }
                case LayerKind.MaxPool:
                {
                    var dx = new float[din!.Length];
                    Pooling.MaxBackwardHost(dx, dy, Tap(prev), new PoolShape(n, d[1], d[2], d[3], 2, 2, 2, 2));
                    c.Check($"{layer.Tap} dx (grad/{prev})", dx, din, Tolerance);
                    break;
                }
                case LayerKind.AdaptiveAvgPool:
                {
                    var o = Dims(layer.Tap);
                    Assert.Equal([n, d[1], 7, 7], o); // at 224 pool5 is already 7x7: the identity
                    var dx = new float[din!.Length];
                    Pooling.AdaptiveAvgBackwardHost(dx, dy, n, d[1], d[2], d[3], o[2], o[3]);
                    c.Check($"{layer.Tap} dx (grad/{prev})", dx, din, Tolerance);
                    break;
                }
                case LayerKind.Linear:
                {
                    int inF = layer.InFeatures, outF = layer.OutFeatures;
                    var w = weights[layer.WeightKey!];
                    var x = Tap(prev); // fc6: the avgpool tap, flattened (N, 25088)
                    Assert.Equal((long)n * inF, x.Length);
                    var dx = new float[x.Length];
                    Linear.BackwardDataHost(dx, dy, w, n, inF, outF);
                    c.Check($"{layer.Tap} dx (grad/{prev})", dx, din!, Tolerance);
                    var dw = new float[w.Length];
                    var db = new float[outF];
                    Linear.BackwardWeightHost(dw, db, dy, x, n, inF, outF);
                    c.Check("grad/" + layer.WeightKey, dw, file.ReadFloat32("grad/" + layer.WeightKey), Tolerance);
                    c.Check("grad/" + layer.BiasKey, db, file.ReadFloat32("grad/" + layer.BiasKey), Tolerance);
                    break;
                }
                default: throw new InvalidOperationException($"{layer.Tap}: layer kind {layer.Kind} has no check");
            }
            checkedLayers++;
            prev = layer.Tap;
        }
        output.WriteLine($"{checkedLayers} layers; worst: {c.Worst.Name} at {c.Worst.Rel:E2} of max |torch|");
        Assert.Equal(13 + 13 + 5 + 1 + 3 + 2, checkedLayers); // conv, relu, pool, avgpool, linear, relu6/7
        Assert.True(c.Failures.Count == 0, string.Join("\n", c.Failures));
    }

    /// <summary>
    /// The whole backward at 224 through the Trainer. Only what no ReLU flip can reach is asserted: the loss and the
    /// last layer's gradients (they depend on the forward, which is continuous at the kink); the rest is printed, with
    /// how many of PyTorch's pre-ReLU values lie within 1e-6 of their tap's max of zero.
    /// </summary>
    [Fact]
    public void EndToEndAt224MatchesPyTorchWhereNoReluFlipReaches()
    {
        using var file = ReferenceFiles.Open(refs.Random224);
        var input = file.ReadFloat32("input");
        var shape = file.Info("input").Shape.Select(d => (int)d).ToArray();
        var labels = file.ReadInt64("labels").Select(v => checked((int)v)).ToArray();
        using var device = new HostDevice();
        using var model = new ImageModel(device, WeightsLocator.Load(refs.Weights));
        foreach (var node in model.Network.Graph.Nodes.Where(n => n.Op == "Dropout")) node.Attributes.Set("p", 0f);
        var all = model.Network.Parameters.Entries.Select(e => e.Name).ToList();
        var taps = Vgg16Architecture.TapNames.Where(t => t != "flatten" && !t.StartsWith("drop")).ToArray();
        using var trainer = new Trainer(model.Network, all, optimizer: null);
        var r = trainer.ForwardBackward(input, new Shape(shape), labels, step: 0, gradients: taps, noFusion: true);

        double loss = file.ReadFloat32("loss")[0];
        output.WriteLine($"loss ours {r.Loss:G9} torch {loss:G9}");
        var c = new Comparison(output);
        foreach (var tap in taps) c.Check("grad/" + tap, r.Gradients[tap], file.ReadFloat32("grad/" + tap), Tolerance, assert: false);
        var tapWorst = c.Worst;
        foreach (var p in all.Where(p => !p.StartsWith("classifier.6.", StringComparison.Ordinal)))
            c.Check("grad/" + p, device.Download(model.Network.Parameters.Grad(p)!.Data),
                file.ReadFloat32("grad/" + p), Tolerance, assert: false);
        output.WriteLine($"worst tap gradient (not asserted): {tapWorst.Name} at {tapWorst.Rel:E2} of max |torch|; worst overall {c.Worst.Name} at {c.Worst.Rel:E2}");

        long nearZero = 0, total = 0;
        foreach (var layer in Vgg16Architecture.Layers.Where(l => l.Kind is LayerKind.Conv || l.Tap is "fc6" or "fc7"))
        {
            var v = file.ReadFloat32("tap/" + layer.Tap);
            double max = v.Max(x => Math.Abs((double)x));
            long k = v.LongCount(x => Math.Abs(x) <= 1e-6 * max);
            if (k > 0) output.WriteLine($"  tap/{layer.Tap,-8} {k} pre-ReLU values within 1e-6·max ({max:G4}) of zero");
            nearZero += k; total += v.Length;
        }
        output.WriteLine($"pre-ReLU values within 1e-6·max of zero: {nearZero} of {total:N0} (each can flip the ReLU mask)");

        var last = new Comparison(output);
        Assert.True(Math.Abs(r.Loss - loss) <= 1e-5 * Math.Abs(loss), $"loss ours {r.Loss:G9}, torch {loss:G9}");
        last.Check("grad/fc8", r.Gradients["fc8"], file.ReadFloat32("grad/fc8"), Tolerance);
        foreach (var p in new[] { Vgg16Architecture.HeadWeight, Vgg16Architecture.HeadBias })
            last.Check("grad/" + p, device.Download(model.Network.Parameters.Grad(p)!.Data), file.ReadFloat32("grad/" + p), Tolerance);
        Assert.True(last.Failures.Count == 0, string.Join("\n", last.Failures));
    }
}
