using System.Text.Json;
using Tp7.Engine.IO;

namespace Tp7.Tests.Infrastructure;

/// <summary>
/// The ONNX importer's fixtures, made by tools/make_onnx_fixtures.py into the test cache on first use and regenerated
/// when the scripts change (their hash names the directory): a torchvision model with random weights, random BatchNorm
/// statistics and random biases exported to ONNX, with PyTorch's values for a fixed input of batch 2.
/// Names: "resnet18-opset13", "resnet18-opset13-bn" (BatchNormalization nodes kept), "mobilenet_v2-opset11",
/// "vgg16-opset13" (553 MB, about a minute to make).
/// </summary>
public sealed class OnnxFixture
{
    public string Name { get; }
    public string Directory { get; }
    /// <summary>Graph input "input" (batch, 3, 224, 224); outputs "logits" then the taps, batch axis dynamic.</summary>
    public string ModelPath { get; }
    public string Arch { get; }
    public int Opset { get; }
    /// <summary>"folded" (the exporter fused each BN into its conv, as a plain torch.onnx.export does) or "kept".</summary>
    public string BatchNorm { get; }
    /// <summary>The graph's outputs in order: "logits", then module paths with '_' for '.' ("layer1", "features_30").</summary>
    public IReadOnlyList<string> OutputNames { get; }
    /// <summary>Each output's shape for the reference input, from manifest.json.</summary>
    public IReadOnlyDictionary<string, long[]> Shapes { get; }

    OnnxFixture(string name, string dir)
    {
        Name = name;
        Directory = dir;
        using var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "manifest.json")));
        var m = manifest.RootElement;
        ModelPath = Path.Combine(dir, m.GetProperty("onnx").GetString()!);
        Arch = m.GetProperty("arch").GetString()!;
        Opset = m.GetProperty("opset").GetInt32();
        BatchNorm = m.GetProperty("batchnorm").GetString()!;
        OutputNames = m.GetProperty("onnx_outputs").EnumerateArray().Select(e => e.GetString()!).ToArray();
        Shapes = m.GetProperty("outputs").EnumerateArray().Append(m.GetProperty("input")).ToDictionary(
            e => e.GetProperty("name").GetString()!,
            e => e.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray());
    }

    /// <summary>The reference input (2, 3, 224, 224), seeded N(0, 1).</summary>
    public (float[] Data, long[] Shape) Input => Read("input");

    /// <summary>PyTorch's eval-mode value of a graph output ("logits", "layer4", …) for <see cref="Input"/>.</summary>
    public (float[] Data, long[] Shape) Read(string value)
    {
        string path = Path.Combine(Directory, value + ".npy");
        if (!File.Exists(path))
            throw new FileNotFoundException($"{Name}: no reference for '{value}'; it has {string.Join(", ", Shapes.Keys)}", path);
        return Npy.ReadFloat32(path);
    }

    public static OnnxFixture Get(string name)
    {
        string root = Path.Combine(RepoPaths.Cache,
            "onnx-fixtures-" + RepoPaths.ScriptsHash("make_onnx_fixtures.py", "export_onnx.py", "reference_pipeline.py"));
        string dir = Path.Combine(root, name);
        Python.Cached(Path.Combine(dir, "manifest.json"), "make_onnx_fixtures.py", root, "--only", name);
        return new OnnxFixture(name, dir);
    }
}
