using Tp7.Engine.IO;
using Tp7.Engine.Model;

namespace Tp7.Tests.Infrastructure;

/// <summary>Full VGG16 state dicts for `tp7 finetune --init`, written with the engine's writer.</summary>
public static class WeightFiles
{
    /// <summary>Writes every tensor of <paramref name="weights"/> (torchvision keys, its own head rows) to <paramref name="path"/>.</summary>
    public static string Write(string path, Vgg16Weights weights, IReadOnlyDictionary<string, float[]>? replace = null, int? headRows = null)
    {
        int rows = headRows ?? weights.NumClasses;
        var tensors = Vgg16Architecture.ParameterSpecsFor(rows)
            .Select(p => (p.Key, p.Shape, (ReadOnlyMemory<float>)(replace != null && replace.TryGetValue(p.Key, out var r) ? r : weights[p.Key])));
        SafeTensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });
        return path;
    }
}
