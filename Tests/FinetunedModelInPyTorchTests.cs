using System.Text.Json;
using Tp7.Engine.Data;
using Tp7.Engine.Devices;
using Tp7.Engine.Imaging;
using Tp7.Engine.Model;
using Tp7.Engine.Training;
using Tp7.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tp7.Tests;

/// <summary>
/// What finetune writes is a model PyTorch users can load: torchvision's VGG16 with classifier[6] replaced by a
/// Linear of the file's width takes model.safetensors with load_state_dict(strict=True) (tools/load_finetuned.py),
/// reads the class names from its metadata, and gives the logits we give on the same images.
/// </summary>
[Collection("reference")]
public sealed class FinetunedModelInPyTorchTests(ReferenceFiles refs, ITestOutputHelper output) : IDisposable
{
    readonly TempDir tmp = new();

    [Fact]
    public void PyTorchLoadsTheModelAndAgreesOnItsLogits()
    {
        const int size = 32;
        string data = Path.Combine(tmp.Path, "data");
        var names = DemoData.CopySplit(data, classes: 3, train: 6, test: 2);
        var ds = DatasetLoader.Open(data);
        var settings = new FinetuneSettings { Tune = "head", Epochs = 2, Batch = 4, Size = size, Lr = 0.05 };
        using var device = new HostDevice();
        var start = Finetune.StartingWeights(WeightsLocator.Load(refs.Weights), ds.Classes.Count, seed: 1);
        var result = new Finetune(ds, settings, Path.Combine(tmp.Path, "out"), device, output.WriteLine).Run(start, "test-weights", null);

        var images = ds.Test.Select(i => i.Path).ToArray();
        var json = JsonDocument.Parse(Python.Run("load_finetuned.py", ["--model", result.ModelPath, "--size", $"{size}", "--images", .. images]).Trim().Split('\n')[^1]).RootElement;
        Assert.Equal(names, json.GetProperty("classes").EnumerateArray().Select(e => e.GetString()!).ToArray());
        var theirs = json.GetProperty("logits").EnumerateArray().SelectMany(r => r.EnumerateArray().Select(v => v.GetDouble())).ToArray();

        var weights = WeightsLocator.Load(result.ModelPath);
        Assert.Equal(names, weights.ClassNames);
        using var model = new ImageModel(device, weights);
        var p = Preprocessing.ImageNet with { Size = size };
        var x = new float[images.Length * p.TensorLength];
        for (int i = 0; i < images.Length; i++) ImageLoader.LoadTensor(images[i], p, x.AsSpan(i * p.TensorLength, p.TensorLength));
        var ours = model.Forward(x, images.Length, size, size, ["fc8"])["fc8"];
        double maxRef = theirs.Max(Math.Abs), maxErr = 0;
        for (int i = 0; i < ours.Length; i++) maxErr = Math.Max(maxErr, Math.Abs(ours[i] - theirs[i]));
        output.WriteLine($"logits of {images.Length} images, {names.Length} classes: max |ours - torch| = {maxErr:E2} ({maxErr / maxRef:E2} of max)");
        Assert.True(maxErr <= 1e-4 * maxRef, $"logits differ by {maxErr / maxRef:E2} of their max");
    }

    public void Dispose() => tmp.Dispose();
}
