using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Tp7.Engine.Imaging;
using Tp7.Engine.Model;

namespace Tp7.Cli.Commands;

/// <summary>`tp7 classify`: top-K ImageNet classes of images, with the lab's preprocessing.</summary>
static class ClassifyCommand
{
    public static Command Create()
    {
        var images = new Argument<string[]>("images") { Description = "Image files", Arity = ArgumentArity.OneOrMore };
        var top = new Option<int>("--top") { Description = "How many classes to show per image", DefaultValueFactory = _ => 5 }.AtLeast(1);
        var json = new Option<bool>("--json") { Description = "Print a JSON array: {path, top: [{index, name, prob}]} per image" };
        var batch = new Option<int>("--batch") { Description = "Images per forward pass", DefaultValueFactory = _ => 8 }.AtLeast(1);
        var profile = new Option<bool>("--profile") { Description = "Time every layer's kernel and print a profile" };
        var command = new Command("classify", "Classify images over the 1000 ImageNet classes (or a fine-tuned head's)") { images, top, json, batch, profile };
        var model = new ModelOptions(command);
        var device = new DeviceOptions(command);
        command.SetHandler(parse =>
        {
            var paths = parse.GetValue(images)!;
            OptionChecks.RequireImageFiles(paths);
            model.Check(parse);
            int b = parse.GetValue(batch);
            using var session = ModelSession.Open(parse, device, model);
            var p = session.Preprocessing;
            // A fine-tuned model names its own classes (finetune writes them into the file's metadata).
            int classes = session.Model.NumClasses;
            if (classes == 0)
                throw new ArgumentException($"{session.Model.Name}: its output {session.Model.LayerShape(session.Model.Graph.Output)} is not (N, classes) logits (ResNet18's package holds pooled features only); use it with run or extract");
            IReadOnlyList<string> names = session.Model.ClassNames
                ?? throw new ArgumentException($"{session.WeightsDescription}: a {classes}-class output without class names (only 1,000 logits are taken as ImageNet's)");
            int k = Math.Min(parse.GetValue(top), classes);
            if (parse.GetValue(profile)) session.Model.Profiler = new LayerProfiler();

            var results = new List<object>();
            int failed = 0;
            var clock = Stopwatch.StartNew();
            double computeSeconds = 0;
            for (int start = 0; start < paths.Length; start += b)
            {
                var chunk = paths.Skip(start).Take(b).ToArray();
                var input = new float[chunk.Length * p.TensorLength];
                var errors = new string?[chunk.Length];
                Parallel.For(0, chunk.Length, i =>
                {
                    try { ImageLoader.LoadTensor(chunk[i], p, input.AsSpan(i * p.TensorLength, p.TensorLength)); }
                    catch (ImageDecodeException e) { errors[i] = e.Message; }
                    catch (IOException e) { errors[i] = $"{chunk[i]}: {e.Message}"; }
                    catch (UnauthorizedAccessException e) { errors[i] = $"{chunk[i]}: {e.Message}"; }
                });
                var ok = Enumerable.Range(0, chunk.Length).Where(i => errors[i] == null).ToArray();
                foreach (var i in Enumerable.Range(0, chunk.Length).Where(i => errors[i] != null))
                {
                    Console.Error.WriteLine($"skipped: {errors[i]}");
                    failed++;
                }
                if (ok.Length == 0) continue;
                var packed = ok.Length == chunk.Length ? input
                    : ok.SelectMany(i => input.AsSpan(i * p.TensorLength, p.TensorLength).ToArray()).ToArray();
                var t0 = Stopwatch.GetTimestamp();
                var output = session.Model.Graph.Output;
                var logits = session.Model.Forward(packed, ok.Length, p.Size, p.Size, [output])[output];
                var probs = session.Model.Softmax(logits, ok.Length);
                computeSeconds += Stopwatch.GetElapsedTime(t0).TotalSeconds;
                for (int j = 0; j < ok.Length; j++)
                {
                    var row = probs.AsSpan(j * classes, classes).ToArray();
                    var best = TopK(row, k);
                    var path = chunk[ok[j]];
                    results.Add(new { path, top = best.Select(i => new { index = i, name = names[i], prob = row[i] }) });
                    if (!parse.GetValue(json))
                    {
                        Console.WriteLine(path);
                        for (int r = 0; r < best.Length; r++)
                            Console.WriteLine($"  {r + 1}. {row[best[r]],8:P2}  {best[r],4}  {names[best[r]]}");
                    }
                }
            }
            if (parse.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
            int n = paths.Length - failed;
            Console.Error.WriteLine($"{n} image(s) on {session.Device.Name} in {clock.Elapsed.TotalSeconds:F2} s " +
                                    $"(forward {computeSeconds:F2} s, {n / Math.Max(computeSeconds, 1e-9):F1} img/s)" +
                                    (failed > 0 ? $", {failed} skipped" : ""));
            if (session.Model.Profiler is { } prof) ProfileTable.Print(prof, n);
            return failed > 0 ? 1 : 0;
        });
        return command;
    }

    /// <summary>Indices of the k largest values, largest first; ties keep the lower index first.</summary>
    public static int[] TopK(ReadOnlySpan<float> values, int k)
    {
        var order = Enumerable.Range(0, values.Length).ToArray();
        var copy = values.ToArray();
        Array.Sort(order, (a, b) => copy[b] != copy[a] ? copy[b].CompareTo(copy[a]) : a.CompareTo(b));
        return order[..k];
    }
}
