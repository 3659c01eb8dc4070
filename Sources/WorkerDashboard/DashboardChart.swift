import Foundation
import WorkerCore

/// The overview's chart of the last hour: a bar a minute, completed jobs stacked on failed ones,
/// drawn on the server as SVG (no script, no library). Its text is numbers only, so it is
/// inserted unescaped.
enum DashboardChart {
    static func svg(_ intervals: [FinishedInterval], now: Date, minutes: Int = 60) -> String {
        let width = 720.0, height = 160.0, top = 14.0, bottom = 18.0
        let plot = height - top - bottom
        let slot = width / Double(minutes)
        let end = (now.timeIntervalSince1970 / 60).rounded(.down) * 60
        let start = end - Double(minutes - 1) * 60
        var byMinute: [Int: FinishedInterval] = [:]
        for interval in intervals {
            let index = Int(((interval.start.timeIntervalSince1970 - start) / 60).rounded())
            if index >= 0, index < minutes { byMinute[index] = interval }
        }
        let highest = max(1, byMinute.values.map { $0.completed + $0.failed }.max() ?? 1)
        var svg = #"<svg class="chart" id="chart" viewBox="0 0 \#(Int(width)) \#(Int(height))" role="img" aria-label="jobs finished per minute over the last hour">"#
        svg += #"<line class="axis" x1="0" y1="\#(height - bottom)" x2="\#(width)" y2="\#(height - bottom)"/>"#
        for index in 0..<minutes {
            guard let interval = byMinute[index] else { continue }
            let x = Double(index) * slot + 1
            let barWidth = max(1, slot - 2)
            let failedHeight = plot * Double(interval.failed) / Double(highest)
            let completedHeight = plot * Double(interval.completed) / Double(highest)
            let base = height - bottom
            if interval.failed > 0 {
                svg += #"<rect class="failed" x="\#(format(x))" y="\#(format(base - failedHeight))" width="\#(format(barWidth))" height="\#(format(failedHeight))"><title>\#(interval.failed) failed</title></rect>"#
            }
            if interval.completed > 0 {
                svg += #"<rect class="completed" x="\#(format(x))" y="\#(format(base - failedHeight - completedHeight))" width="\#(format(barWidth))" height="\#(format(completedHeight))"><title>\#(interval.completed) completed</title></rect>"#
            }
        }
        svg += #"<text x="2" y="10">\#(highest) a minute</text><text x="2" y="\#(Int(height) - 4)">−60 min</text><text x="\#(Int(width) - 30)" y="\#(Int(height) - 4)">now</text></svg>"#
        return svg
    }

    private static func format(_ value: Double) -> String {
        String(format: "%.1f", value)
    }
}
