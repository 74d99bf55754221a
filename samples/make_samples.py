"""Regenerate the binary samples (PDF, DOCX) in samples/docs/.

    python samples/make_samples.py

The text samples (md, txt, html, csv, json) are written by hand; all seven tell
one story (Voltaris Energy Storage's market strategy) with facts that agree
(battery pack price USD 115/kWh in 2024, LFP round-trip efficiency 92%) and
facts that contradict each other (market growth 21% vs 9% a year; Voltaris'
European market share 14% vs 9%). Output is deterministic (fixed dates, no
random ids), so regenerating does not change the committed files' text.
"""
from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parent / "docs"

PDF_TITLE = "Global Stationary Storage Outlook 2025"
PDF_PAGES = [
    [
        ("h1", PDF_TITLE),
        ("p", "Meridian Research Group, February 2025. Analyst: Dr. Priya Raman."),
        ("h2", "Executive summary"),
        ("p", "The global stationary energy storage market installed 175 GWh in 2024. We expect a compound "
              "annual growth rate (CAGR) of 21% between 2025 and 2030, taking annual installations above "
              "450 GWh by 2030. Utility-scale projects account for about 70% of new capacity."),
        ("p", "Lithium-ion battery pack prices fell to USD 115 per kWh in 2024 across all chemistries. "
              "Lithium iron phosphate (LFP) packs averaged USD 104 per kWh and now dominate grid storage "
              "because they avoid cobalt and nickel and reach 6,000 cycles."),
        ("h2", "Demand drivers"),
        ("p", "Solar and wind build-out, grid congestion and the value of frequency regulation and peak "
              "shaving services drive demand. Four-hour systems are now competitive with gas peakers in "
              "Germany, Spain, Italy and the United Kingdom."),
    ],
    [
        ("h2", "European competitive landscape"),
        ("p", "Helios Power AG remains the largest European integrator with roughly 22% of utility-scale "
              "installations by capacity. Voltaris Energy Storage follows with about 14%, ahead of a long tail "
              "of regional integrators. NordCell Technologies is the most advanced sodium-ion developer in "
              "Europe but is not expected to ship commercial volumes before 2028."),
        ("h2", "Risks to the forecast"),
        ("p", "Grid connection queues, falling midday power prices and changes to capacity market subsidies "
              "could slow growth. A price war among integrators would compress gross margins below 20%."),
        ("p", "Round-trip efficiency of LFP systems in the field averages 92%, with degradation of 1 to 2% "
              "of capacity per year."),
    ],
]

DOCX_TITLE = "Competitor Briefing: European Battery Storage Integrators"
DOCX_BLOCKS = [
    ("h1", DOCX_TITLE),
    ("p", "Prepared by the Voltaris Strategy Office, April 2025. Confidential."),
    ("h2", "Helios Power AG"),
    ("p", "Helios Power AG, headquartered in Munich, is the market leader in European utility-scale battery "
          "storage. In February 2025 it cut German system prices by about 10%. Its CEO Thomas Brandt has said "
          "the company will defend its share at the expense of margin."),
    ("h2", "NordCell Technologies"),
    ("p", "NordCell Technologies runs a sodium-ion pilot line in Gothenburg. Pilot packs cost about USD 95 per "
          "kWh but reach only 3,000 cycles and 88% round-trip efficiency. Commercial volumes are unlikely "
          "before 2028."),
    ("h2", "Market shares (European utility-scale, by installed capacity, 2024)"),
    ("table", [
        ["Company", "Share", "Source"],
        ["Helios Power AG", "24%", "Baltic Energy Analytics"],
        ["Voltaris Energy Storage", "9%", "Baltic Energy Analytics"],
        ["NordCell Technologies", "<1%", "Baltic Energy Analytics"],
    ]),
    ("p", "Note: Baltic Energy Analytics puts Voltaris Energy Storage at a 9% market share, well below the 14% "
          "in our own January strategy memo; the difference comes from counting only commissioned projects."),
    ("h2", "Implications"),
    ("p", "Voltaris should not follow the Helios price cut. Competing on availability guarantees, LFP cycle life "
          "and the GridPilot software keeps gross margin near the 18% target."),
]


def make_pdf(path: Path) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer

    styles = getSampleStyleSheet()
    style = {"h1": styles["Title"], "h2": styles["Heading2"], "p": styles["BodyText"]}
    story = []
    for i, page in enumerate(PDF_PAGES):
        if i:
            story.append(PageBreak())
        for kind, text in page:
            story.append(Paragraph(text, style[kind]))
            story.append(Spacer(1, 6))
    doc = SimpleDocTemplate(str(path), pagesize=A4, title=PDF_TITLE, author="Meridian Research Group",
                            creator="samples/make_samples.py", invariant=1)
    doc.build(story)


def make_docx(path: Path) -> None:
    import datetime

    import docx

    d = docx.Document()
    d.core_properties.title = DOCX_TITLE
    d.core_properties.author = "Voltaris Strategy Office"
    fixed = datetime.datetime(2025, 4, 1, 9, 0, 0)
    d.core_properties.created = fixed
    d.core_properties.modified = fixed
    for kind, content in DOCX_BLOCKS:
        if kind == "h1":
            d.add_heading(content, level=1)
        elif kind == "h2":
            d.add_heading(content, level=2)
        elif kind == "p":
            d.add_paragraph(content)
        elif kind == "table":
            table = d.add_table(rows=len(content), cols=len(content[0]))
            for r, row in enumerate(content):
                for c, cell in enumerate(row):
                    table.cell(r, c).text = cell
    d.save(str(path))


def main() -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    make_pdf(DOCS / "market_outlook_2025.pdf")
    make_docx(DOCS / "competitor_briefing.docx")
    print(f"wrote {DOCS / 'market_outlook_2025.pdf'} and {DOCS / 'competitor_briefing.docx'}")


if __name__ == "__main__":
    main()
