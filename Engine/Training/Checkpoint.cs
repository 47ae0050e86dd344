using System.Text.Json;
using Tp7.Engine.Data;
using Tp7.Engine.IO;

namespace Tp7.Engine.Training;

/// <summary>
/// What `finetune --resume` needs to continue bit for bit: the trainable parameters, the optimiser's state vectors
/// and step count, the epochs done with their numbers, and the settings and dataset it belongs to (a resume with
/// other settings or another dataset is refused, naming what differs). Frozen parameters are not stored: they come
/// from the same starting weights, whose source is recorded.
/// </summary>
public sealed class Checkpoint
{
    public required string Path { get; init; }
    public required IReadOnlyList<EpochRecord> Epochs { get; init; }
    public required long Steps { get; init; }
    public required int OptimizerSteps { get; init; }
    readonly Dictionary<string, float[]> tensors = [];
    // A loss can be infinite in an epoch that still trained; the record must say so, not fail to be written.
    static readonly JsonSerializerOptions Json = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>Settings that must match on resume (the epoch count and --max-steps may change).</summary>
    static string Fingerprint(FinetuneSettings s) => JsonSerializer.Serialize(s with { Epochs = 0, MaxSteps = null });

    static string DatasetFingerprint(Dataset d)
        => JsonSerializer.Serialize(new { classes = d.Classes, train = d.Train.Count, test = d.Test.Count });

    public static void Write(string path, Trainer trainer, FinetuneSettings s, Dataset dataset, IReadOnlyList<EpochRecord> epochs, long steps)
    {
        var store = trainer.Network.Parameters;
        var list = new List<(string, long[], ReadOnlyMemory<float>)>();
        foreach (var e in store.Entries.Where(e => store.IsTrainable(e.Name)))
            list.Add(("param/" + e.Name, e.Shape.Dims.Select(d => (long)d).ToArray(), store.Read(e.Name)));
        foreach (var (name, data) in trainer.Optimizer!.State)
            list.Add(("state/" + name, [data.Length], store.Device.Download(data)));
        var meta = new Dictionary<string, string>
        {
            ["format"] = "tp7-finetune-checkpoint",
            ["version"] = "1",
            ["settings"] = Fingerprint(s),
            ["dataset"] = DatasetFingerprint(dataset),
            ["epochs"] = JsonSerializer.Serialize(epochs, Json),
            ["steps"] = steps.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["optimizer_steps"] = trainer.Optimizer.Steps.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        SafeTensorsWriter.Write(path, list, meta); // atomic: temporary file, flush, rename
    }

    public static Checkpoint Read(string path, FinetuneSettings s, Dataset dataset)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"--resume: {path}: no checkpoint there (finetune writes one after each epoch)");
        using var f = SafeTensorsFile.Open(path);
        string Meta(string key) => f.Metadata.TryGetValue(key, out var v) ? v : throw new InvalidDataException($"--resume: {path}: not a tp7 finetune checkpoint (no '{key}')");
        if (Meta("format") != "tp7-finetune-checkpoint") throw new InvalidDataException($"--resume: {path}: not a tp7 finetune checkpoint");
        if (Meta("settings") != Fingerprint(s))
            throw new ArgumentException($"--resume: {path} was trained with other settings ({Diff(Meta("settings"), Fingerprint(s))}); resume with the same options");
        if (Meta("dataset") != DatasetFingerprint(dataset))
            throw new ArgumentException($"--resume: {path} belongs to another dataset (classes or image counts differ)");
        var cp = new Checkpoint
        {
            Path = path,
            Epochs = JsonSerializer.Deserialize<List<EpochRecord>>(Meta("epochs"), Json)!,
            Steps = long.Parse(Meta("steps"), System.Globalization.CultureInfo.InvariantCulture),
            OptimizerSteps = int.Parse(Meta("optimizer_steps"), System.Globalization.CultureInfo.InvariantCulture),
        };
        foreach (var t in f.Tensors)
        {
            var values = f.ReadFloat32(t.Key);
            FiniteCheck.Require(path, t.Key, values, t.Shape);
            cp.tensors[t.Key] = values;
        }
        return cp;
    }

    static string Diff(string a, string b)
    {
        var x = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(a)!;
        var y = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(b)!;
        return string.Join(", ", x.Keys.Union(y.Keys).Where(k => !x.TryGetValue(k, out var u) || !y.TryGetValue(k, out var v) || u.ToString() != v.ToString())
            .Select(k => $"{k}: {(x.TryGetValue(k, out var u) ? u.ToString() : "-")} then, {(y.TryGetValue(k, out var v) ? v.ToString() : "-")} now"));
    }

    /// <summary>Puts the trainable parameters and the optimiser state back.</summary>
    public void Restore(Trainer trainer)
    {
        var store = trainer.Network.Parameters;
        foreach (var e in store.Entries.Where(e => store.IsTrainable(e.Name)))
            store.Write(e.Name, tensors.TryGetValue("param/" + e.Name, out var v) ? v
                : throw new InvalidDataException($"--resume: {Path}: no tensor 'param/{e.Name}'"));
        foreach (var (name, data) in trainer.Optimizer!.State)
        {
            var v = tensors.TryGetValue("state/" + name, out var t) ? t : throw new InvalidDataException($"--resume: {Path}: no tensor 'state/{name}'");
            if (v.Length != data.Length) throw new InvalidDataException($"--resume: {Path}: 'state/{name}' has {v.Length} values, expected {data.Length}");
            store.Device.Upload(data, v);
        }
        trainer.Optimizer.Restore(OptimizerSteps);
    }
}
