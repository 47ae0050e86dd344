using System.Reflection;
using Tp7.Bench;

// Benchmark project: `dotnet run -c Release --project Bench -- NAME [args]`. Each benchmark is a class
// implementing IBenchmark in its own file; it validates before it times, warms up, and reports medians.
var benches = Assembly.GetExecutingAssembly().GetTypes()
    .Where(t => typeof(IBenchmark).IsAssignableFrom(t) && !t.IsAbstract && !t.IsInterface)
    .Select(t => (IBenchmark)Activator.CreateInstance(t)!)
    .OrderBy(b => b.Name)
    .ToList();
if (args.Length == 0 || benches.All(b => b.Name != args[0]))
{
    Console.Error.WriteLine("usage: tp7-bench NAME [args]; benchmarks:");
    foreach (var b in benches) Console.Error.WriteLine($"  {b.Name,-12} {b.Description}");
    return args.Length == 0 ? 0 : 2;
}
return benches.First(b => b.Name == args[0]).Run(args[1..]);

namespace Tp7.Bench
{
    public interface IBenchmark
    {
        string Name { get; }
        string Description { get; }
        int Run(string[] args);
    }

    /// <summary>The benchmarks' `--name value` arguments.</summary>
    public static class BenchArgs
    {
        public static string? Arg(string[] args, string name)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
        }

        public static int Int(string[] args, string name, int fallback)
            => Arg(args, name) is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : fallback;
    }

    public static class Timing
    {
        /// <summary>Runs <paramref name="action"/> warm times, then reps times; returns the median seconds.</summary>
        public static double Median(Action action, int reps = 5, int warm = 1)
        {
            for (int i = 0; i < warm; i++) action();
            var times = new double[reps];
            for (int i = 0; i < reps; i++)
            {
                long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                action();
                times[i] = System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds;
            }
            Array.Sort(times);
            return times[reps / 2];
        }
    }
}
