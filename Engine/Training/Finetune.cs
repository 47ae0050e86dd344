using System.Diagnostics;
using System.Text.Json;
using Tp7.Engine.Data;
using Tp7.Engine.Devices;
using Tp7.Engine.Features;
using Tp7.Engine.Graph;
using Tp7.Engine.Imaging;
using Tp7.Engine.IO;
using Tp7.Engine.Model;
using Tp7.Engine.Svm;

namespace Tp7.Engine.Training;

/// <summary>What `tp7 finetune` trains and how. Option names in errors are the CLI's.</summary>
public sealed record FinetuneSettings
{
    /// <summary>head | classifier | all | from:TAP.</summary>
    public string Tune { get; init; } = "head";
    public int Epochs { get; init; } = 10;
    public int Batch { get; init; } = 32;
    public double Lr { get; init; } = 0.01;
    public double Momentum { get; init; } = 0.9;
    public double WeightDecay { get; init; } = 5e-4;
    public string Optimizer { get; init; } = "sgd";
    /// <summary>none | step | cosine (per epoch).</summary>
    public string Schedule { get; init; } = "none";
    public int StepSize { get; init; } = 10;
    public double Gamma { get; init; } = 0.1;
    public bool Flip { get; init; }
    public bool Crop { get; init; }
    public float Dropout { get; init; } = 0.5f;
    public bool Shuffle { get; init; } = true;
    public int? MaxSteps { get; init; }
    public int Seed { get; init; }
    public int Size { get; init; } = 224;

    /// <summary>Every check that needs no data, before any work.</summary>
    public void Validate()
    {
        if (!(Lr > 0) || !double.IsFinite(Lr)) throw new ArgumentException($"--lr must be > 0, got {Lr}");
        if (Epochs < 1) throw new ArgumentException($"--epochs must be >= 1, got {Epochs}");
        if (Batch < 1) throw new ArgumentException($"--batch must be >= 1, got {Batch}");
        if (Momentum < 0 || Momentum >= 1) throw new ArgumentException($"--momentum must be in [0, 1), got {Momentum}");
        if (WeightDecay < 0) throw new ArgumentException($"--wd must be >= 0, got {WeightDecay}");
        if (Dropout < 0 || Dropout >= 1) throw new ArgumentException($"--dropout must be in [0, 1), got {Dropout}");
        if (MaxSteps is < 1) throw new ArgumentException($"--max-steps must be >= 1, got {MaxSteps}");
        if (Optimizer is not ("sgd" or "adamw")) throw new ArgumentException($"--optimizer: '{Optimizer}' is not one of sgd, adamw");
        if (Schedule is not ("none" or "step" or "cosine")) throw new ArgumentException($"--schedule: '{Schedule}' is not one of none, step, cosine");
        if (Size < Vgg16Architecture.MinInputSize) throw new ArgumentException(Vgg16Architecture.SizeTooSmall(Size));
        TrainableFrom();
        if (Tune == "head" && (Flip || Crop))
            throw new ArgumentException("--augment needs --tune classifier, all or from:TAP: --tune head trains on cached relu7 features of the unaugmented images");
    }

    /// <summary>The torchvision module the trainable suffix starts at.</summary>
    public string TrainableFrom() => Tune switch
    {
        "head" => "classifier.6",
        "classifier" => "classifier.0",
        "all" => "features.0",
        _ when Tune.StartsWith("from:", StringComparison.Ordinal) => FromTap(Tune[5..]),
        _ => throw new ArgumentException($"--tune: '{Tune}' is not one of head, classifier, all, from:TAP (e.g. from:conv4_1)"),
    };

    static string FromTap(string tap)
    {
        LayerSpec l;
        try { l = Vgg16Architecture.Layer(tap); }
        catch (ArgumentException e) { throw new ArgumentException($"--tune from:{tap}: {e.Message}"); }
        var first = Vgg16Architecture.Layers.Skip(l.Position).FirstOrDefault(x => x.WeightKey != null)
            ?? throw new ArgumentException($"--tune from:{tap}: no trainable layer at or after {tap}");
        return first.Module;
    }

    public double LearningRate(int epoch) => Schedule switch
    {
        "step" => Kernels.LrSchedule.Step(Lr, epoch, StepSize, Gamma),
        "cosine" => Kernels.LrSchedule.Cosine(Lr, epoch, Epochs),
        _ => Lr,
    };
}

/// <summary>One epoch's numbers.</summary>
public sealed record EpochRecord(int Epoch, double Lr, double TrainLoss, double TrainAccuracy, double TestAccuracy, double TestLoss,
    int Steps, double Seconds, double ImagesPerSecond);

/// <summary>Progress of training: epoch (1-based), step within it, loss so far, throughput, ETA.</summary>
public readonly record struct TrainProgress(int Epoch, int Epochs, int Step, int StepsPerEpoch, double Loss, double ImagesPerSecond, double EtaSeconds);

public sealed record FinetuneResult(Dataset Dataset, FinetuneSettings Settings, IReadOnlyList<EpochRecord> Epochs, int[] TestLabels,
    int[] Predicted, string[] TestPaths, ClassificationReport Report, string ModelPath, long Steps, bool StoppedAtMaxSteps, string Device);

/// <summary>
/// The lab's last study: VGG16 with classifier.6 replaced by Linear(4096, classes), trained with the rest frozen
/// (head: on cached relu7 features; classifier; from:TAP) or end to end (all). Writes model.safetensors with
/// torchvision's keys and the class names, a checkpoint per epoch (atomic; --resume continues bit for bit), and the
/// report's data.
/// </summary>
public sealed class Finetune
{
    public const string CheckpointName = "checkpoint.safetensors";

    readonly Dataset dataset;
    readonly FinetuneSettings s;
    readonly string outDir;
    readonly ComputeDevice device;
    readonly Action<string> log;
    public Action<TrainProgress>? Progress { get; init; }
    public Action<string, ExtractProgress>? ExtractProgress { get; init; }
    public FeatureCache? Cache { get; init; }

    public Finetune(Dataset dataset, FinetuneSettings settings, string outDir, ComputeDevice device, Action<string> log)
    {
        settings.Validate();
        if (dataset.Classes.Count < 2) throw new ArgumentException($"{dataset.Root}: {dataset.Classes.Count} class; fine-tuning a classifier needs at least 2");
        if (dataset.Train.Count == 0) throw new ArgumentException($"{dataset.Root}: no training images");
        if (dataset.Test.Count == 0) throw new ArgumentException($"{dataset.Root}: no test images (use train/ and test/ folders or --train-per-class)");
        this.dataset = dataset; s = settings; this.outDir = outDir; this.device = device; this.log = log;
    }

    /// <summary>
    /// The starting weights with the new head: from <paramref name="init"/> as they are when its classifier.6 already
    /// has one row per class (a model begun elsewhere continues), else with classifier.6 drawn as a fresh PyTorch
    /// nn.Linear(4096, classes) would be: U(-1/sqrt(4096), 1/sqrt(4096)) for weight and bias, seeded.
    /// </summary>
    public static Vgg16Weights StartingWeights(Vgg16Weights init, int classes, int seed)
    {
        if (init.NumClasses == classes) return init;
        if (init.NumClasses != Vgg16Architecture.NumClasses)
            throw new ArgumentException($"--init {init.Source}: classifier.6 has {init.NumClasses} rows, but the dataset has {classes} classes (a 1,000-row ImageNet head would be replaced)");
        var tensors = Vgg16Architecture.ParameterSpecs.ToDictionary(p => p.Key, p => init[p.Key]);
        var (w, b) = NewHead(classes, 4096, seed);
        tensors[Vgg16Architecture.HeadWeight] = w;
        tensors[Vgg16Architecture.HeadBias] = b;
        return new Vgg16Weights(tensors, init.Source + $" with a new {classes}-class head (seed {seed})");
    }

    /// <summary>nn.Linear's default init (kaiming_uniform with a = sqrt(5) gives bound 1/sqrt(fan_in); bias the same bound).</summary>
    public static (float[] W, float[] B) NewHead(int outF, int inF, int seed)
    {
        var rng = new Random(seed);
        double bound = 1 / Math.Sqrt(inF);
        var w = new float[(long)outF * inF];
        for (int i = 0; i < w.Length; i++) w[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
        var b = new float[outF];
        for (int i = 0; i < b.Length; i++) b[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
        return (w, b);
    }

    /// <param name="weights">Starting VGG16 weights (see <see cref="StartingWeights"/>); classifier.6 has one row per class.</param>
    public FinetuneResult Run(Vgg16Weights weights, string weightsSha256, string? resumeDir, CancellationToken cancel = default)
    {
        int classes = dataset.Classes.Count;
        if (weights.NumClasses != classes) throw new ArgumentException($"weights have a {weights.NumClasses}-class head for {classes} classes");
        Directory.CreateDirectory(outDir);
        var checkpoint = resumeDir != null ? Checkpoint.Read(Path.Combine(resumeDir, CheckpointName), s, dataset) : null;
        return s.Tune == "head"
            ? RunHead(weights, weightsSha256, checkpoint, cancel)
            : RunImages(weights, checkpoint, cancel);
    }

    // ---- --tune head: a Dropout + Linear network over cached features ----

    FinetuneResult RunHead(Vgg16Weights weights, string weightsSha256, Checkpoint? resume, CancellationToken cancel)
    {
        FeatureSet train, test;
        using (var vgg = new ImageModel(device, weights) { Log = log })
            (train, test) = HeadFeatures(vgg, weightsSha256, "relu7", Preprocessing.ImageNet with { Size = s.Size }, cancel);
        var (result, head) = TrainHead(train, test, Vgg16Architecture.HeadWeight, Vgg16Architecture.HeadBias,
            (weights[Vgg16Architecture.HeadWeight], weights[Vgg16Architecture.HeadBias]), resume, cancel);
        return Finish(result, weights, head, test.Labels, test.Paths);
    }

    /// <summary>
    /// --tune head on any image model (an imported ONNX network): a new Linear(D, classes) on its features at
    /// <paramref name="layer"/> (null: the model's default feature layer), drawn as nn.Linear would be. Writes
    /// head.safetensors (head.weight, head.bias; class names, model, layer and preprocessing in its metadata).
    /// </summary>
    public FinetuneResult RunHead(ImageModel model, string modelIdentity, string? layer, string? resumeDir, CancellationToken cancel = default)
    {
        if (s.Tune != "head")
            throw new ArgumentException($"--tune {s.Tune}: only --tune head works on {model.Name} (full backpropagation through imported networks is not supported yet)");
        Directory.CreateDirectory(outDir);
        var resume = resumeDir != null ? Checkpoint.Read(Path.Combine(resumeDir, CheckpointName), s, dataset) : null;
        string tap = model.CanonicalLayer(layer ?? model.DefaultLayer);
        var (train, test) = HeadFeatures(model, modelIdentity, tap, model.Preprocessing, cancel);
        var (result, head) = TrainHead(train, test, "head.weight", "head.bias", NewHead(dataset.Classes.Count, train.D, s.Seed), resume, cancel);
        var report = ClassificationReport.Compute(test.Labels, result.Predicted, dataset.Classes.Count);
        string modelPath = Path.Combine(outDir, "head.safetensors");
        var meta = new Dictionary<string, string>
        {
            ["source"] = $"tp7 finetune --model {model.Name} --tune head",
            ["model"] = model.Name,
            ["model_source"] = model.WeightsSource,
            ["layer"] = tap,
            ["preprocessing"] = model.Preprocessing.Describe(),
            ["classes"] = JsonSerializer.Serialize(dataset.Classes),
            ["settings"] = JsonSerializer.Serialize(s),
        };
        SafeTensorsWriter.Write(modelPath, [("head.weight", new long[] { dataset.Classes.Count, train.D }, head.W), ("head.bias", new long[] { dataset.Classes.Count }, head.B)], meta);
        return new FinetuneResult(dataset, s, result.Epochs, test.Labels, result.Predicted, test.Paths, report, modelPath, result.Steps, result.StoppedAtMaxSteps, device.Name);
    }

    (FeatureSet Train, FeatureSet Test) HeadFeatures(ImageModel model, string identity, string layer, Preprocessing pre, CancellationToken cancel)
    {
        var ex = new FeatureExtractor(model, identity, layer, l2: false, batchSize: Math.Min(32, Math.Max(8, s.Batch)), cache: Cache, preprocessing: pre);
        var train = ex.Extract(dataset.Train, dataset.Classes, p => ExtractProgress?.Invoke("train features", p), cancel);
        var test = ex.Extract(dataset.Test, dataset.Classes, p => ExtractProgress?.Invoke("test features", p), cancel);
        foreach (var sk in train.Skipped.Concat(test.Skipped)) log($"skipped {sk.Path}: {sk.Reason}");
        return (train, test);
    }

    (LoopResult Result, (float[] W, float[] B) Head) TrainHead(FeatureSet train, FeatureSet test, string wName, string bName, (float[] W, float[] B) start,
        Checkpoint? resume, CancellationToken cancel)
    {
        int classes = dataset.Classes.Count, d = train.D;
        var g = new Graph.Graph();
        g.Inputs["features"] = new Shape(1, d);
        g.Nodes.Add(new Node("head.dropout", "Dropout", ["features"], ["head.dropout"], new Attributes().Set("p", s.Dropout)));
        g.Parameters.Add((wName, new Shape(classes, d)));
        g.Parameters.Add((bName, new Shape(classes)));
        g.Nodes.Add(new Node("head", "Linear", ["head.dropout", wName, bName], ["logits"], new Attributes()));
        g.Output = "logits";
        using var net = new Network(device, g) { Log = log };
        net.Parameters.Write(wName, start.W);
        net.Parameters.Write(bName, start.B);
        using var trainer = new Trainer(net, [wName, bName], MakeOptimizer, (ulong)s.Seed);
        var batches = new BatchSource(rows =>
        {
            var x = new float[(long)rows.Length * d];
            for (int j = 0; j < rows.Length; j++) train.Row(rows[j]).CopyTo(x.AsSpan(j * d, d));
            return (x, new Shape(rows.Length, d), rows);
        });
        var result = Loop(trainer, train.N, train.Labels, batches, resume, cancel,
            evaluate: () => Evaluate(net, test.X, new Shape(test.N, d), test.Labels));
        return (result, (net.Parameters.Read(wName), net.Parameters.Read(bName)));
    }

    // ---- classifier / all / from:TAP: images through VGG16 ----

    FinetuneResult RunImages(Vgg16Weights weights, Checkpoint? resume, CancellationToken cancel)
    {
        using var vgg = new ImageModel(device, weights) { Log = log };
        var net = vgg.Network;
        foreach (var n in net.Graph.Nodes.Where(n => n.Op == "Dropout")) n.Attributes.Set("p", s.Dropout);
        string from = s.TrainableFrom();
        int firstIndex = net.Parameters.Entries.ToList().FindIndex(e => e.Name.StartsWith(from + ".", StringComparison.Ordinal));
        var trainable = net.Parameters.Entries.Skip(firstIndex).Select(e => e.Name).ToList();
        using var trainer = new Trainer(net, trainable, MakeOptimizer, (ulong)s.Seed);
        CheckMemory(trainer);

        var trainItems = dataset.Train;
        var pre = Preprocessing.ImageNet with { Size = s.Crop ? s.Size + s.Size / 7 : s.Size };
        var labels = trainItems.Select(i => i.Label).ToArray();
        var batches = new BatchSource(rows => LoadImages(rows, trainItems, pre), augment: true);
        var (testX, testLabels, testPaths) = LoadAll(dataset.Test, Preprocessing.ImageNet with { Size = s.Size });
        var result = Loop(trainer, trainItems.Count, labels, batches, resume, cancel,
            evaluate: () => Evaluate(net, testX, new Shape(testLabels.Length, 3, s.Size, s.Size), testLabels));
        return Finish(result, null, default, testLabels, testPaths, net.Parameters);
    }

    void CheckMemory(Trainer trainer)
    {
        var plan = trainer.Plan(new Shape(s.Batch, 3, s.Size, s.Size));
        long need = plan.ArenaBytes + 4 * (trainer.Network.Parameters.Count + 3 * trainer.Network.Parameters.TrainableCount);
        if (need > device.MemoryBytes * 0.95)
            throw new InsufficientMemoryException($"--batch {s.Batch}: training needs {need >> 20} MiB on {device.Name}, which has {device.MemoryBytes >> 20} MiB; use a smaller --batch");
    }

    readonly HashSet<string> reported = [];

    /// <summary>Decodes the batch's images on all cores; an image that fails is left out of the batch (and named once).</summary>
    (float[] X, Shape Shape, int[] Kept) LoadImages(int[] rows, IReadOnlyList<DatasetItem> items, Preprocessing pre)
    {
        var (x, _, paths) = LoadAll(rows.Select(r => items[r]).ToList(), pre);
        var kept = rows.Where(r => paths.Contains(items[r].Path)).ToArray();
        return (x, new Shape(kept.Length, 3, pre.Size, pre.Size), kept);
    }

    (float[] X, int[] Labels, string[] Paths) LoadAll(IReadOnlyList<DatasetItem> items, Preprocessing pre)
    {
        var ok = new List<DatasetItem>();
        var tensors = new float[items.Count][];
        Parallel.For(0, items.Count, j =>
        {
            try { tensors[j] = ImageLoader.LoadTensor(items[j].Path, pre); }
            catch (Exception e) when (e is ImageDecodeException or IOException or UnauthorizedAccessException)
            {
                lock (reported)
                    if (reported.Add(items[j].Path)) log($"skipped {items[j].Path}: {e.Message}");
            }
        });
        var keep = Enumerable.Range(0, items.Count).Where(j => tensors[j] != null).ToArray();
        var x = new float[(long)keep.Length * pre.TensorLength];
        for (int r = 0; r < keep.Length; r++) tensors[keep[r]].CopyTo(x.AsSpan(r * pre.TensorLength, pre.TensorLength));
        return (x, keep.Select(j => items[j].Label).ToArray(), keep.Select(j => items[j].Path).ToArray());
    }

    Optimizer MakeOptimizer(ParameterStore store) => Optimizer.Create(s.Optimizer, store, s.Momentum, s.WeightDecay);

    /// <summary>Batches of training rows in an epoch's order; images get their seeded flip and crop here.</summary>
    sealed class BatchSource(Func<int[], (float[] X, Shape Shape, int[] Kept)> load, bool augment = false)
    {
        public (float[] X, Shape Shape, int[] Kept) Get(int[] rows, FinetuneSettings s, int epoch, int batchIndex)
        {
            var (x, shape, kept) = load(rows);
            if (!augment || !(s.Flip || s.Crop) || kept.Length == 0) return (x, shape, kept);
            var (ax, ashape) = Augment.Apply(x, shape, s, epoch, batchIndex);
            return (ax, ashape, kept);
        }
    }

    sealed record LoopResult(List<EpochRecord> Epochs, long Steps, bool StoppedAtMaxSteps, int[] Predicted);

    LoopResult Loop(Trainer trainer, int n, int[] labels, BatchSource batches, Checkpoint? resume, CancellationToken cancel,
        Func<(int[] Predicted, double Loss, double Accuracy)> evaluate)
    {
        var epochs = new List<EpochRecord>();
        long step = 0;
        int startEpoch = 0;
        if (resume != null)
        {
            resume.Restore(trainer);
            epochs.AddRange(resume.Epochs);
            step = resume.Steps;
            startEpoch = resume.Epochs.Count;
            log($"resuming after epoch {startEpoch} (step {step}) from {resume.Path}");
        }
        int stepsPerEpoch = (n + s.Batch - 1) / s.Batch;
        int[] predicted = [];
        bool stopped = false;
        var clock = Stopwatch.StartNew();
        long stepsThisRun = 0;
        for (int epoch = startEpoch; epoch < s.Epochs && !stopped; epoch++)
        {
            double lr = s.LearningRate(epoch);
            var order = EpochOrder(n, epoch);
            double lossSum = 0;
            int correct = 0, seen = 0, stepsDone = 0;
            var epochClock = Stopwatch.StartNew();
            for (int b = 0; b < stepsPerEpoch; b++)
            {
                cancel.ThrowIfCancellationRequested();
                int start = b * s.Batch, count0 = Math.Min(s.Batch, n - start);
                var (x, shape, idx) = batches.Get(order.AsSpan(start, count0).ToArray(), s, epoch, b);
                int count = idx.Length;
                if (count == 0) continue;
                var y = idx.Select(i => labels[i]).ToArray();
                trainer.Network.Parameters.ZeroGrad();
                var r = trainer.ForwardBackward(x, shape, y, step);
                if (!double.IsFinite(r.Loss))
                    throw new ArithmeticException($"loss is {r.Loss} at step {step + 1} (epoch {epoch + 1}): training diverged; the last good checkpoint stays in {outDir} (try a smaller --lr)");
                trainer.Optimizer!.Step(lr);
                step++; stepsThisRun++; stepsDone++;
                lossSum += r.Loss * count;
                seen += count;
                int classes = r.Logits.Length / count;
                for (int j = 0; j < count; j++)
                    if (ArgMax(r.Logits.AsSpan(j * classes, classes)) == y[j]) correct++;
                double rate = seen / epochClock.Elapsed.TotalSeconds;
                long left = (long)(s.Epochs - epoch) * stepsPerEpoch - b - 1;
                if (s.MaxSteps is { } ms0) left = Math.Min(left, ms0 - step);
                Progress?.Invoke(new TrainProgress(epoch + 1, s.Epochs, b + 1, stepsPerEpoch, lossSum / seen, rate,
                    left * (clock.Elapsed.TotalSeconds / stepsThisRun)));
                if (s.MaxSteps is { } ms && step >= ms) { stopped = true; break; }
            }
            var (pred, testLoss, testAcc) = evaluate();
            if (!double.IsFinite(testLoss))
                throw new ArithmeticException($"test loss is {testLoss} after epoch {epoch + 1} (step {step}): training diverged; the last good checkpoint stays in {outDir} (try a smaller --lr)");
            predicted = pred;
            epochs.Add(new EpochRecord(epoch + 1, lr, lossSum / Math.Max(1, seen), correct / (double)Math.Max(1, seen), testAcc, testLoss,
                stepsDone, epochClock.Elapsed.TotalSeconds, seen / epochClock.Elapsed.TotalSeconds));
            log($"epoch {epoch + 1}/{s.Epochs}: train loss {lossSum / Math.Max(1, seen):F4}, train accuracy {correct / (double)Math.Max(1, seen):P1}, test accuracy {testAcc:P1}, lr {lr:G3}, {seen / epochClock.Elapsed.TotalSeconds:F1} img/s");
            Checkpoint.Write(Path.Combine(outDir, CheckpointName), trainer, s, dataset, epochs, step);
        }
        if (predicted.Length == 0) predicted = evaluate().Predicted;
        return new LoopResult(epochs, step, stopped, predicted);
    }

    /// <summary>Predictions, mean cross-entropy and accuracy of the network (inference mode) on (x, labels).</summary>
    (int[] Predicted, double Loss, double Accuracy) Evaluate(Network net, float[] x, Shape shape, int[] labels)
    {
        if (shape[0] == 0) return ([], 0, 0);
        var parts = new List<float[]>();
        long per = shape.PerSample;
        int chunk = Math.Max(1, Math.Min(shape[0], Math.Max(s.Batch, 16)));
        for (int start = 0; start < shape[0]; start += chunk)
        {
            int count = Math.Min(chunk, shape[0] - start);
            parts.Add(net.Forward(x.AsSpan((int)(start * per), (int)(count * per)), shape.WithBatch(count), [net.Graph.Output])[net.Graph.Output]);
        }
        var logits = parts.SelectMany(p => p).ToArray();
        int classes = logits.Length / shape[0];
        var pred = new int[shape[0]];
        double loss = 0;
        for (int i = 0; i < pred.Length; i++)
        {
            var row = logits.AsSpan(i * classes, classes);
            pred[i] = ArgMax(row);
            double m = double.NegativeInfinity;
            foreach (var v in row) m = Math.Max(m, v);
            double sum = 0;
            foreach (var v in row) sum += Math.Exp(v - m);
            loss += m + Math.Log(sum) - row[labels[i]];
        }
        return (pred, loss / pred.Length, pred.Where((p, i) => p == labels[i]).Count() / (double)pred.Length);
    }

    static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int k = 1; k < row.Length; k++) if (row[k] > row[best]) best = k;
        return best;
    }

    /// <summary>Listing order (classes sorted, files by ordinal name) with --no-shuffle, else a permutation seeded by (seed, epoch).</summary>
    int[] EpochOrder(int n, int epoch)
    {
        var order = Enumerable.Range(0, n).ToArray();
        if (s.Shuffle) new Random(unchecked(s.Seed * 7919 + epoch)).Shuffle(order);
        return order;
    }

    FinetuneResult Finish(LoopResult r, Vgg16Weights? baseWeights, (float[] W, float[] B) head, int[] testLabels, string[] testPaths,
        ParameterStore? all = null)
    {
        var report = ClassificationReport.Compute(testLabels, r.Predicted, dataset.Classes.Count);
        string modelPath = Path.Combine(outDir, "model.safetensors");
        var tensors = Vgg16Architecture.ParameterSpecsFor(dataset.Classes.Count).Select(p =>
        {
            float[] data = all != null ? all.Read(p.Key)
                : p.Key == Vgg16Architecture.HeadWeight ? head.W
                : p.Key == Vgg16Architecture.HeadBias ? head.B
                : baseWeights![p.Key];
            return (p.Key, p.Shape, (ReadOnlyMemory<float>)data);
        }).ToList();
        var meta = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["source"] = $"tp7 finetune --tune {s.Tune}",
            ["classes"] = JsonSerializer.Serialize(dataset.Classes),
            ["settings"] = JsonSerializer.Serialize(s),
        };
        SafeTensorsWriter.Write(modelPath, tensors, meta); // atomic: temporary file, flush, rename
        return new FinetuneResult(dataset, s, r.Epochs, testLabels, r.Predicted, testPaths, report, modelPath, r.Steps, r.StoppedAtMaxSteps, device.Name);
    }
}

/// <summary>
/// Seeded augmentation of a batch (N, 3, S', S'): a random S x S crop (when --augment crop, S' = S + S/7) and a
/// horizontal flip with probability 1/2, drawn from (seed, epoch, batch), so a resumed run draws the same ones.
/// </summary>
static class Augment
{
    public static (float[] X, Shape Shape) Apply(float[] x, Shape shape, FinetuneSettings s, int epoch, int batch)
    {
        int n = shape[0], src = shape[2], size = s.Crop ? s.Size : src;
        var rng = new Random(unchecked((s.Seed * 31 + epoch) * 1_000_003 + batch));
        var y = new float[(long)n * 3 * size * size];
        for (int i = 0; i < n; i++)
        {
            int oy = s.Crop ? rng.Next(src - size + 1) : 0, ox = s.Crop ? rng.Next(src - size + 1) : 0;
            bool flip = s.Flip && rng.Next(2) == 1;
            for (int c = 0; c < 3; c++)
                for (int r = 0; r < size; r++)
                {
                    var from = x.AsSpan((int)((((long)i * 3 + c) * src + oy + r) * src + ox), size);
                    var to = y.AsSpan((int)((((long)i * 3 + c) * size + r) * size), size);
                    from.CopyTo(to);
                    if (flip) to.Reverse();
                }
        }
        return (y, new Shape(n, 3, size, size));
    }
}
