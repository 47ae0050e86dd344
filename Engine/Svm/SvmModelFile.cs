using System.Globalization;
using System.Text.Json;
using Tp7.Engine.IO;

namespace Tp7.Engine.Svm;

/// <summary>
/// A trained linear SVM as safetensors: `coef` (classifiers, D) and `intercept` (classifiers) in float32, plus
/// `coef_residual`/`intercept_residual` holding what float32 rounding dropped (coef + coef_residual recovers the
/// double weights to ~48 bits, so a reloaded model predicts exactly as the trained one), and metadata: class labels
/// and names, options, the feature layer and the weights' SHA-256 the features came from.
/// </summary>
public static class SvmModelFile
{
    public sealed record Stored(LinearSvmModel Model, IReadOnlyList<string> ClassNames, string Layer, bool L2, string WeightsSha256);

    public static void Write(string path, LinearSvmModel m, IReadOnlyList<string> classNames, string layer, bool l2, string weightsSha256)
    {
        var hi = m.W.Select(v => (float)v).ToArray();
        var lo = m.W.Select((v, i) => (float)(v - hi[i])).ToArray();
        var bhi = m.Bias.Select(v => (float)v).ToArray();
        var blo = m.Bias.Select((v, i) => (float)(v - bhi[i])).ToArray();
        long k = m.NumClassifiers, d = m.NumFeatures;
        var meta = new Dictionary<string, string>
        {
            ["format"] = "tp7-linear-svm",
            ["version"] = "1",
            ["classes"] = JsonSerializer.Serialize(m.Classes),
            ["class_names"] = JsonSerializer.Serialize(classNames),
            ["C"] = m.Options.C.ToString("R", CultureInfo.InvariantCulture),
            ["loss"] = m.Options.Loss.ToString(),
            ["tol"] = m.Options.Tolerance.ToString("R", CultureInfo.InvariantCulture),
            ["max_iter"] = m.Options.MaxIterations.ToString(CultureInfo.InvariantCulture),
            ["bias_scale"] = m.Options.BiasScale.ToString("R", CultureInfo.InvariantCulture),
            ["seed"] = m.Options.Seed.ToString(CultureInfo.InvariantCulture),
            ["iterations"] = JsonSerializer.Serialize(m.Iterations),
            ["layer"] = layer,
            ["l2_normalized"] = l2 ? "true" : "false",
            ["weights_sha256"] = weightsSha256,
        };
        SafeTensorsWriter.Write(path,
        [
            ("coef", [k, d], hi), ("coef_residual", [k, d], lo),
            ("intercept", [k], bhi), ("intercept_residual", [k], blo),
        ], meta);
    }

    public static Stored Read(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        string Meta(string key) => f.Metadata.TryGetValue(key, out var v) ? v
            : throw new InvalidDataException($"{path}: metadata '{key}' missing; not a model written by 'tp7 svm train'");
        if (Meta("format") != "tp7-linear-svm") throw new InvalidDataException($"{path}: format '{Meta("format")}', expected 'tp7-linear-svm'");
        var classes = JsonSerializer.Deserialize<int[]>(Meta("classes")) ?? [];
        var names = JsonSerializer.Deserialize<string[]>(Meta("class_names")) ?? [];
        var info = f.Info("coef");
        if (info.Shape.Count != 2) throw new InvalidDataException($"{path}: tensor 'coef' has shape {info.ShapeText}, expected (classifiers, D)");
        int d = (int)info.Shape[1];
        var hi = f.ReadFloat32("coef");
        var lo = f.Contains("coef_residual") ? f.ReadFloat32("coef_residual") : new float[hi.Length];
        var bhi = f.ReadFloat32("intercept");
        var blo = f.Contains("intercept_residual") ? f.ReadFloat32("intercept_residual") : new float[bhi.Length];
        if (lo.Length != hi.Length || blo.Length != bhi.Length)
            throw new InvalidDataException($"{path}: residual tensors do not match 'coef'/'intercept' in size");
        foreach (var (key, values) in new[] { ("coef", hi), ("coef_residual", lo), ("intercept", bhi), ("intercept_residual", blo) })
            FiniteCheck.Require(path, key, values);
        var options = new SvmOptions(
            C: double.Parse(Meta("C"), CultureInfo.InvariantCulture),
            Loss: Enum.Parse<SvmLoss>(Meta("loss")),
            Tolerance: double.Parse(Meta("tol"), CultureInfo.InvariantCulture),
            MaxIterations: int.Parse(Meta("max_iter"), CultureInfo.InvariantCulture),
            BiasScale: double.Parse(Meta("bias_scale"), CultureInfo.InvariantCulture),
            Seed: int.Parse(Meta("seed"), CultureInfo.InvariantCulture));
        var model = new LinearSvmModel(classes, d,
            hi.Select((v, i) => (double)v + lo[i]).ToArray(), bhi.Select((v, i) => (double)v + blo[i]).ToArray(), options,
            JsonSerializer.Deserialize<int[]>(Meta("iterations")));
        return new Stored(model, names, Meta("layer"), Meta("l2_normalized") == "true", Meta("weights_sha256"));
    }
}
