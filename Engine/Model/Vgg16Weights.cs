namespace Tp7.Engine.Model;

/// <summary>
/// VGG16's 32 parameter tensors on the host, under torchvision's state_dict keys (OIHW convolutions,
/// (out, in) linear layers), with where they came from.
/// </summary>
public sealed class Vgg16Weights
{
    readonly Dictionary<string, float[]> tensors;

    public string Source { get; }

    /// <summary>Rows of classifier.6: 1,000 for ImageNet weights, the classes of a fine-tuned head.</summary>
    public int NumClasses { get; }
    /// <summary>Names of the head's classes when the file says them (a fine-tuned model), else null (ImageNet's).</summary>
    public IReadOnlyList<string>? ClassNames { get; }

    public Vgg16Weights(IReadOnlyDictionary<string, float[]> tensors, string source, IReadOnlyList<string>? classNames = null)
    {
        var problems = new List<string>();
        NumClasses = tensors.TryGetValue(Vgg16Architecture.HeadBias, out var hb) && hb.Length > 0 ? hb.Length : Vgg16Architecture.NumClasses;
        if (classNames != null && classNames.Count != NumClasses)
            problems.Add($"{classNames.Count} class names for a head of {NumClasses} rows");
        ClassNames = classNames;
        foreach (var (key, shape) in Vgg16Architecture.ParameterSpecsFor(NumClasses))
        {
            long expected = shape.Aggregate(1L, (a, b) => a * b);
            if (!tensors.TryGetValue(key, out var t)) problems.Add($"{key}: missing");
            else if (t.Length != expected) problems.Add($"{key}: {t.Length} values, expected {expected} for [{string.Join(", ", shape)}]");
        }
        foreach (var key in tensors.Keys)
            if (Vgg16Architecture.ParameterSpecs.All(p => p.Key != key)) problems.Add($"{key}: not a VGG16 parameter");
        if (problems.Count > 0)
            throw new ArgumentException($"{source}: not VGG16 weights: {string.Join("; ", problems)}");
        this.tensors = new Dictionary<string, float[]>(tensors);
        Source = source;
    }

    public float[] this[string key] => tensors.TryGetValue(key, out var t)
        ? t : throw new KeyNotFoundException($"{Source}: no tensor '{key}'");

    public long ParameterCount => tensors.Values.Sum(t => (long)t.Length);

    /// <summary>
    /// Weights drawn from torchvision's initialisation distributions (VGG._initialize_weights): convolutions
    /// kaiming_normal_(mode="fan_out", nonlinearity="relu"), i.e. N(0, 2 / (out_channels * k * k)); linear layers
    /// N(0, 0.01^2); biases 0. Same seed, same weights; not bit-equal to PyTorch's generator (use
    /// tools/convert_weights.py --random-init for that). Lets the main job run on a machine with no weights file.
    /// </summary>
    public static Vgg16Weights RandomInit(int seed)
    {
        var specs = Vgg16Architecture.Layers.Where(l => l.WeightKey != null).ToList();
        var tensors = new System.Collections.Concurrent.ConcurrentDictionary<string, float[]>();
        Parallel.For(0, specs.Count, i =>
        {
            var l = specs[i];
            double std = l.Kind == LayerKind.Conv ? Math.Sqrt(2.0 / (l.OutChannels * l.Kernel * l.Kernel)) : 0.01;
            var w = new float[l.Parameters - l.BiasShape![0]];
            var rng = new Random(unchecked(seed * 1_000_003 + i));
            for (int j = 0; j < w.Length; j += 2)
            {
                // Box-Muller: two independent normals per pair of uniforms.
                double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
                double r = Math.Sqrt(-2.0 * Math.Log(u1)) * std;
                w[j] = (float)(r * Math.Cos(2 * Math.PI * u2));
                if (j + 1 < w.Length) w[j + 1] = (float)(r * Math.Sin(2 * Math.PI * u2));
            }
            tensors[l.WeightKey!] = w;
            tensors[l.BiasKey!] = new float[l.BiasShape[0]];
        });
        return new Vgg16Weights(tensors, $"random-init (torchvision distributions, seed {seed}, generated in memory)");
    }
}
