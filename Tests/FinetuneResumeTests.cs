using System.Text.Json;
using Tp7.Engine.Data;
using Tp7.Engine.Devices;
using Tp7.Engine.IO;
using Tp7.Engine.Model;
using Tp7.Engine.Training;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// `finetune --resume` continues bit for bit: 3 epochs uninterrupted (A) against 1 epoch, then a resume to 3 (B),
/// with the randomness that must replay switched on (shuffled order and dropout masks for --tune head, flips for
/// from:conv5_1). Every tensor of model.safetensors and every per-epoch number must be identical.
/// </summary>
[Collection("reference")]
public sealed class FinetuneResumeTests(ReferenceFiles refs, ITestOutputHelper output)
{
    [Fact]
    public void HeadWithDropoutAndShufflingResumesBitForBit()
        => Compare(new FinetuneSettings { Tune = "head", Dropout = 0.5f, Shuffle = true, Size = 32, Batch = 8, Epochs = 3, Seed = 3 });

    [Fact]
    public void FromConv5_1WithFlipsResumesBitForBit()
        => Compare(new FinetuneSettings { Tune = "from:conv5_1", Flip = true, Dropout = 0.5f, Shuffle = true, Size = 32, Batch = 8, Epochs = 3, Seed = 3 });

    void Compare(FinetuneSettings settings)
    {
        using var scratch = new ScratchDir("tp7-resume");
        DemoData.CopySplit(scratch["data"], classes: 3, train: 8, test: 4);
        var dataset = DatasetLoader.Open(scratch["data"]);
        var start = Finetune.StartingWeights(WeightsLocator.Load(refs.Weights), dataset.Classes.Count, settings.Seed);
        using var device = new HostDevice();
        FinetuneResult Run(FinetuneSettings s, string dir, string? resume)
            => new Finetune(dataset, s, dir, device, line => output.WriteLine("  " + line)).Run(start, "resume-test", resume);

        output.WriteLine($"A: {settings.Tune}, {settings.Epochs} epochs uninterrupted");
        var a = Run(settings, scratch["A"], null);
        output.WriteLine("B: 1 epoch, then resumed to 3");
        var b1 = Run(settings with { Epochs = 1 }, scratch["B"], null);
        Assert.Single(b1.Epochs);
        var b = Run(settings, scratch["B"], scratch["B"]);

        Assert.Equal(settings.Epochs, a.Epochs.Count);
        Assert.Equal(settings.Epochs, b.Epochs.Count);
        Assert.Equal(a.Steps, b.Steps);
        for (int e = 0; e < a.Epochs.Count; e++)
        {
            var (x, y) = (a.Epochs[e], b.Epochs[e]);
            output.WriteLine($"epoch {e + 1}: train loss A {x.TrainLoss:R} B {y.TrainLoss:R}; test loss A {x.TestLoss:R} B {y.TestLoss:R}; test accuracy A {x.TestAccuracy:P1} B {y.TestAccuracy:P1}");
            Assert.Equal(BitConverter.DoubleToInt64Bits(x.TrainLoss), BitConverter.DoubleToInt64Bits(y.TrainLoss));
            Assert.Equal(BitConverter.DoubleToInt64Bits(x.TestLoss), BitConverter.DoubleToInt64Bits(y.TestLoss));
            Assert.Equal(x.TrainAccuracy, y.TrainAccuracy);
            Assert.Equal(x.TestAccuracy, y.TestAccuracy);
        }
        // The checkpoints' epoch records too (what a later resume would carry on from).
        string Epochs(string dir)
        {
            using var f = SafeTensorsFile.Open(Path.Combine(dir, Finetune.CheckpointName));
            return JsonSerializer.Serialize(JsonSerializer.Deserialize<List<EpochRecord>>(f.Metadata["epochs"])!
                .Select(r => new { r.Epoch, r.TrainLoss, r.TrainAccuracy, r.TestLoss, r.TestAccuracy, r.Steps }));
        }
        Assert.Equal(Epochs(scratch["A"]), Epochs(scratch["B"]));
        Assert.Equal(a.Predicted, b.Predicted);

        using var ma = SafeTensorsFile.Open(a.ModelPath);
        using var mb = SafeTensorsFile.Open(b.ModelPath);
        Assert.Equal(ma.Tensors.Select(t => t.Key), mb.Tensors.Select(t => t.Key));
        int differing = 0;
        foreach (var t in ma.Tensors)
        {
            var (u, v) = (ma.ReadFloat32(t.Key), mb.ReadFloat32(t.Key));
            int first = Enumerable.Range(0, u.Length).FirstOrDefault(i => BitConverter.SingleToInt32Bits(u[i]) != BitConverter.SingleToInt32Bits(v[i]), -1);
            if (first >= 0)
            {
                differing++;
                output.WriteLine($"  {t.Key}: differs first at {first} (A {u[first]:R}, B {v[first]:R})");
            }
        }
        // And training moved the trainable tensors (a resume that skipped training would also be "identical" to nothing).
        string firstTrained = settings.Tune == "head" ? Vgg16Architecture.HeadWeight : "features.24.weight";
        Assert.NotEqual(start[firstTrained], ma.ReadFloat32(firstTrained));
        output.WriteLine($"{ma.Tensors.Count} tensors of model.safetensors, {differing} differ between A and B");
        Assert.Equal(0, differing);
    }
}
