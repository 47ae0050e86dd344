using Tp7.Engine.Devices;
using Tp7.Engine.Graph;
using Tp7.Engine.Model;
using Tp7.Engine.Training;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// VGG16's backward pass against PyTorch's autograd (tools/make_reference.py, same random-init weights with random
/// biases, eval mode, cross-entropy mean): the gradient of every parameter and of every tap, max |ours − torch| at
/// most 1e-4 of max |torch|, at 32x32 (host backend and the ILGPU CPU accelerator). At 224x224 a pre-ReLU value within
/// rounding of 0 can flip its mask end to end; <see cref="Vgg16LayerBackwardTests"/> checks each layer there in isolation.
/// The tap check runs unfused (each tap must exist as a value); the parameter check also runs with the fused
/// conv+ReLU epilogues users get.
/// </summary>
[Collection("reference")]
public sealed class Vgg16GradientTests(ReferenceFiles refs, ITestOutputHelper output)
{
    const double Tolerance = 1e-4;
    static readonly string[] Taps = Vgg16Architecture.TapNames.Where(t => t != "flatten" && !t.StartsWith("drop")).ToArray();

    [Fact]
    public void HostGradientsMatchPyTorchAt32() => Compare(new HostDevice(), refs.Random32, fused: false);

    [Fact]
    public void HostFusedGradientsMatchPyTorchAt32() => Compare(new HostDevice(), refs.Random32, fused: true);

    [Fact]
    public void IlgpuCpuGradientsMatchPyTorchAt32() => Compare(IlgpuDevice.OpenCpuAccelerator(), refs.Random32, fused: true);

    void Compare(ComputeDevice device, string referencePath, bool fused)
    {
        using var _ = device;
        using var file = ReferenceFiles.Open(referencePath);
        var input = file.ReadFloat32("input");
        var shape = file.Info("input").Shape;
        var labels = file.ReadInt64("labels").Select(v => (int)v).ToArray();
        using var model = new ImageModel(device, WeightsLocator.Load(refs.Weights));
        // The reference runs in eval mode: dropout off.
        foreach (var node in model.Network.Graph.Nodes.Where(n => n.Op == "Dropout")) node.Attributes.Set("p", 0f);
        var all = model.Network.Parameters.Entries.Select(e => e.Name).ToList();
        using var trainer = new Trainer(model.Network, all, optimizer: null);
        var r = trainer.ForwardBackward(input, new Shape(shape.Select(d => (int)d).ToArray()), labels, step: 0,
            gradients: fused ? null : Taps, noFusion: !fused);

        var failures = new List<string>();
        double loss = file.ReadFloat32("loss")[0];
        output.WriteLine($"{device.Name}, input {string.Join("x", shape)}, fused {fused}: loss ours {r.Loss:G9} torch {loss:G9}");
        if (Math.Abs(r.Loss - loss) > 1e-5 * Math.Max(1, Math.Abs(loss))) failures.Add($"loss {r.Loss} vs torch {loss}");
        // The logits a training pass returns are those the loss saw (not memory that backward reused since).
        var torchLogits = file.ReadFloat32("logits");
        double maxLogit = torchLogits.Max(v => Math.Abs(v)), logitErr = torchLogits.Select((v, i) => Math.Abs(v - r.Logits[i])).Max();
        if (!(logitErr <= 1e-4 * maxLogit)) failures.Add($"logits of the training pass differ from torch's by {logitErr / maxLogit:E2} of their max");
        var worst = ("", 0.0);
        void Check(string name, float[] got, float[] want)
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
            if (rel > worst.Item2 || double.IsNaN(rel)) worst = (name, rel);
            output.WriteLine($"  grad/{name,-22} {rel:E2}  (max |torch| {maxRef:G4})");
            if (!(rel <= Tolerance)) failures.Add($"grad/{name}: {rel:E2} of max |torch| {maxRef:G4} at {at} (ours {got[at]}, torch {want[at]})");
        }
        if (!fused)
            foreach (var tap in Taps) Check(tap, r.Gradients[tap], file.ReadFloat32("grad/" + tap));
        foreach (var p in all) Check(p, model.Network.Parameters.Device.Download(model.Network.Parameters.Grad(p)!.Data), file.ReadFloat32("grad/" + p));
        output.WriteLine($"worst: grad/{worst.Item1} at {worst.Item2:E2} of max |torch|");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }
}
